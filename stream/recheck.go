package stream

import (
	"context"
	"strconv"
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
// the same set of channels.
type recheckGroup struct {
	p     auth.Principal
	chans []channel.Name
	conns []*conn
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
	groups := map[string]*recheckGroup{}
	var order []*recheckGroup
	var key []byte
	for _, c := range s.reg.snapshot() {
		if c.ended.Load() {
			continue
		}
		key = appendGroupKey(key[:0], c)
		g := groups[string(key)]
		if g == nil {
			g = &recheckGroup{p: c.p, chans: c.chans}
			groups[string(key)] = g
			order = append(order, g)
		}
		g.conns = append(g.conns, c)
	}
	if len(order) == 0 {
		return
	}

	var (
		vmu   sync.Mutex
		valid = map[validKey]*validOnce{}
	)
	stillValid := func(p auth.Principal) error {
		k := validKey{p.Tenant, p.User, p.Kind, p.IssuedAt.UnixNano()}
		vmu.Lock()
		v := valid[k]
		if v == nil {
			v = &validOnce{}
			valid[k] = v
		}
		vmu.Unlock()
		v.once.Do(func() { v.err = s.cfg.Auth.StillValid(ctx, p) })
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
				err := stillValid(g.p)
				if err == nil {
					err = s.cfg.Gate.Check(ctx, g.p, g.chans)
				}
				if err == nil {
					continue
				}
				if p, ok := problem.As(err); ok {
					cond := event.EndAccessRevoked
					if p.Code == problem.CodeTokenExpired {
						cond = event.EndTokenExpired
					}
					for _, c := range g.conns {
						c.finish(cond, 0)
					}
					continue
				}
				mu.Lock()
				left += len(g.conns)
				faults++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, g := range order {
		work <- g
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

// appendGroupKey appends the key of c's recheck group: its principal, every
// field, and its channels in order (a stream's channels are deduplicated and
// in request order, so the same request gives the same key).
func appendGroupKey(b []byte, c *conn) []byte {
	p := c.p
	for _, f := range []string{p.Tenant, p.User, string(p.Kind), p.Credential} {
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(append(b, ':'), f...)
	}
	b = strconv.AppendInt(b, p.Expiry.UnixNano(), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, p.IssuedAt.UnixNano(), 10)
	for _, ch := range c.chans {
		n := ch.String()
		b = append(b, '|')
		b = append(b, n...)
	}
	return b
}
