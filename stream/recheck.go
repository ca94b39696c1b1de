package stream

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/problem"
)

// recheckLoop re-runs the tenant gate and the revocation check on every open
// stream each RecheckInterval (protocol.md §6 access-revoked). A stream whose
// principal is refused ends; a fault of a membership source leaves streams
// open (they were authorized, and one outage should not disconnect every
// client) and is logged.
func (s *Server) recheckLoop() {
	defer close(s.stopped)
	t := time.NewTicker(s.cfg.RecheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.recheck()
		}
	}
}

// recheckWorkers bounds the checks one recheck runs at once.
const recheckWorkers = 8

// recheckGroup is the open streams that one check answers for: the same
// principal (credential included: a membership source may forward it) on
// the same set of channels, conns[lo:hi] of the recheck's sorted snapshot.
type recheckGroup struct {
	lo, hi    int
	principal int // index of its revocation check
}

// comparePrincipals orders principals by what a revocation check
// (Authenticator.StillValid) answers for: tenant, user, kind, issue time and
// expiry; then by the credential, which only a gate check may read.
func comparePrincipals(a, b *auth.Principal) (c int, samePrincipal bool) {
	if c = cmp.Compare(a.Tenant, b.Tenant); c == 0 {
		if c = cmp.Compare(a.User, b.User); c == 0 {
			if c = cmp.Compare(a.Kind, b.Kind); c == 0 {
				if c = a.IssuedAt.Compare(b.IssuedAt); c == 0 {
					c = a.Expiry.Compare(b.Expiry)
				}
			}
		}
	}
	if c != 0 {
		return c, false
	}
	return cmp.Compare(a.Credential, b.Credential), true
}

// compareGroups orders streams so that each recheck group, and each
// principal's groups, are adjacent: by principal, then by channel list (a
// stream's channels are deduplicated and in request order, so the same
// request gives the same list).
func compareGroups(a, b *conn) int {
	if c, _ := comparePrincipals(&a.p, &b.p); c != 0 {
		return c
	}
	return compareChannels(a.chans, b.chans)
}

func compareChannels(a, b []channel.Name) int {
	return slices.CompareFunc(a, b, func(x, y channel.Name) int { return cmp.Compare(x.String(), y.String()) })
}

// recheck runs the checks of recheckLoop once: grouped, so that streams of
// one principal on one set of channels cost one gate check (and streams of
// one principal one revocation check), with at most recheckWorkers checks
// at once, and one warning for all the streams a fault left open. Groups
// are found by sorting a snapshot of the streams, which allocates nothing
// per stream.
func (s *Server) recheck() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecheckInterval)
	defer cancel()
	conns := slices.DeleteFunc(s.reg.snapshot(), func(c *conn) bool { return c.ended.Load() })
	if len(conns) == 0 {
		return
	}
	slices.SortFunc(conns, compareGroups)
	order := make([]recheckGroup, 0, len(conns))
	principals := 0
	for i, c := range conns {
		samePrincipal := false
		if i > 0 {
			prev := conns[i-1]
			var d int
			if d, samePrincipal = comparePrincipals(&prev.p, &c.p); d == 0 && compareChannels(prev.chans, c.chans) == 0 {
				order[len(order)-1].hi++
				continue
			}
		}
		if !samePrincipal {
			principals++
		}
		order = append(order, recheckGroup{lo: i, hi: i + 1, principal: principals - 1})
	}
	valid := make([]validOnce, principals)
	stillValid := func(g *recheckGroup) error {
		v := &valid[g.principal]
		v.once.Do(func() { v.err = s.cfg.Auth.StillValid(ctx, conns[g.lo].p) })
		return v.err
	}

	var (
		mu       sync.Mutex
		left     int   // streams left open by a fault
		faults   int   // groups whose check failed on a fault
		firstErr error // one of those faults
	)
	work := make(chan *recheckGroup)
	var wg sync.WaitGroup
	for range min(recheckWorkers, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range work {
				first := conns[g.lo]
				err := stillValid(g)
				if err == nil {
					err = s.cfg.Gate.Check(ctx, first.p, first.chans)
				}
				if err == nil {
					continue
				}
				if p, ok := problem.As(err); ok {
					cond := event.EndAccessRevoked
					if p.Code == problem.CodeTokenExpired {
						cond = event.EndTokenExpired
					}
					for _, c := range conns[g.lo:g.hi] {
						c.finish(cond, 0)
					}
					continue
				}
				mu.Lock()
				left += g.hi - g.lo
				faults++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for i := range order {
		work <- &order[i]
	}
	close(work)
	wg.Wait()
	if left > 0 {
		s.cfg.Logger.Warn("membership recheck failed; streams left open",
			"streams", left, "groups", faults, "err", firstErr)
	}
}

type validOnce struct {
	once sync.Once
	err  error
}
