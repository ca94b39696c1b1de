package stream

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/auth"
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
// the same set of channels. The first stream's principal and channels are
// the group's.
type recheckGroup struct {
	first     *conn
	more      []*conn
	principal int // index of its revocation check
}

// groupKey names a recheck group without building a string per stream: the
// principal's fields (strings the streams already hold) and the channels,
// the one channel's name for a single-channel stream, the names joined by
// '|', which no name holds, otherwise (a stream's channels are deduplicated
// and in request order, so the same request gives the same key).
type groupKey struct {
	tenant, user, cred string
	kind               auth.Kind
	expiry, issued     int64
	chans              string
}

func groupKeyOf(c *conn) groupKey {
	p := &c.p
	k := groupKey{tenant: p.Tenant, user: p.User, cred: p.Credential, kind: p.Kind,
		expiry: p.Expiry.UnixNano(), issued: p.IssuedAt.UnixNano()}
	if len(c.chans) == 1 {
		k.chans = c.chans[0].String()
	} else {
		var b strings.Builder
		for _, ch := range c.chans {
			b.WriteString(ch.String())
			b.WriteByte('|')
		}
		k.chans = b.String()
	}
	return k
}

// validKey names what StillValid answers for: the principal without its
// credential (revocations concern tenant, user and issue time).
type validKey struct {
	tenant, user string
	kind         auth.Kind
	issued       int64
}

// recheck runs the checks of recheckLoop once: grouped, so that streams of
// one principal on one set of channels cost one gate check (and streams of
// one principal one revocation check), with at most recheckWorkers checks
// at once, and one warning for all the streams a fault left open.
func (s *Server) recheck() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecheckInterval)
	defer cancel()
	conns := s.reg.snapshot()
	groups := make(map[groupKey]int, len(conns))     // index in order
	principals := make(map[validKey]int, len(conns)) // index in valid
	order := make([]recheckGroup, 0, len(conns))
	for _, c := range conns {
		if c.ended.Load() {
			continue
		}
		k := groupKeyOf(c)
		if i, ok := groups[k]; ok {
			order[i].more = append(order[i].more, c)
			continue
		}
		// Groups that differ only by channels or credential share one
		// revocation check.
		vk := validKey{k.tenant, k.user, k.kind, k.issued}
		pi, ok := principals[vk]
		if !ok {
			pi = len(principals)
			principals[vk] = pi
		}
		groups[k] = len(order)
		order = append(order, recheckGroup{first: c, principal: pi})
	}
	if len(order) == 0 {
		return
	}
	valid := make([]validOnce, len(principals))
	stillValid := func(g *recheckGroup) error {
		v := &valid[g.principal]
		v.once.Do(func() { v.err = s.cfg.Auth.StillValid(ctx, g.first.p) })
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
				err := stillValid(g)
				if err == nil {
					err = s.cfg.Gate.Check(ctx, g.first.p, g.first.chans)
				}
				if err == nil {
					continue
				}
				if p, ok := problem.As(err); ok {
					cond := event.EndAccessRevoked
					if p.Code == problem.CodeTokenExpired {
						cond = event.EndTokenExpired
					}
					g.first.finish(cond, 0)
					for _, c := range g.more {
						c.finish(cond, 0)
					}
					continue
				}
				mu.Lock()
				left += 1 + len(g.more)
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
