package stream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/problem"
)

// faultyChecks counts checks and answers each with err, or a refusal for
// the refused user.
type faultyChecks struct {
	valid, gate atomic.Int64
	inFlight    atomic.Int64
	peak        atomic.Int64
	err         error
	refused     string
}

func (f *faultyChecks) Authenticate(*http.Request, auth.Options) (auth.Principal, error) {
	return auth.Principal{}, errors.New("unused")
}

func (f *faultyChecks) StillValid(context.Context, auth.Principal) error {
	f.valid.Add(1)
	return nil
}

func (f *faultyChecks) Check(_ context.Context, p auth.Principal, _ []channel.Name) error {
	f.gate.Add(1)
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		old := f.peak.Load()
		if n <= old || f.peak.CompareAndSwap(old, n) {
			break
		}
	}
	time.Sleep(time.Millisecond)
	if p.User == f.refused {
		return problem.New(http.StatusForbidden, problem.CodeForbidden, "not a member")
	}
	return f.err
}

// warnings counts warning records.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// TestRecheckGroupedDuringOutage: 300 streams of 30 users, 10 each on the
// same channels, while the membership source fails: one gate check per
// user and channel set, at most recheckWorkers at once, streams left open
// and one warning. A refused user's streams all end.
func TestRecheckGroupedDuringOutage(t *testing.T) {
	f := &faultyChecks{err: errors.New("membership: connection refused"), refused: "u7"}
	w := &warnings{}
	s, err := New(Config{Broker: newBenchEnv(t).b, Auth: f, Gate: f, Codec: event.NewCodec([]byte("k")),
		Logger: slog.New(w), RecheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chans := []channel.Name{channel.MustMake("test", benchTenant, "a"), channel.MustMake("test", benchTenant, "b")}
	var conns []*conn
	for u := range 30 {
		p := auth.Principal{Tenant: benchTenant, User: "u" + string(rune('0'+u%10)) + string(rune('a'+u/10)), Kind: auth.KindJWT}
		if u == 7 {
			p.User = "u7"
		}
		for range 10 {
			c := newConn(p, chans, 16, 1<<20)
			s.reg.add(c)
			conns = append(conns, c)
		}
	}
	s.recheck()
	if n := f.gate.Load(); n != 30 {
		t.Errorf("%d gate checks for 30 principals", n)
	}
	if n := f.valid.Load(); n != 30 {
		t.Errorf("%d revocation checks for 30 principals", n)
	}
	if p := f.peak.Load(); p > recheckWorkers {
		t.Errorf("%d checks at once", p)
	}
	ended := 0
	for _, c := range conns {
		if c.ended.Load() {
			ended++
			if cond, _ := c.condition(); cond != event.EndAccessRevoked || c.p.User != "u7" {
				t.Errorf("%s ended with %s", c.p.User, cond)
			}
		}
	}
	if ended != 10 {
		t.Errorf("%d streams ended, want the refused user's 10", ended)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.msgs) != 1 {
		t.Fatalf("warnings %q, want one", w.msgs)
	}
}

// BenchmarkRecheck is one recheck of 10,000 open streams, each of a user of
// its own (a group each), against checks that pass: B/op is the garbage a
// recheck leaves every SLUICE_RECHECK_INTERVAL, which sets how far an idle
// server's heap grows between collections.
func BenchmarkRecheck(b *testing.B) {
	s, err := New(Config{Broker: newBenchEnv(b).b, Auth: allowAll{}, Gate: allowAll{}, Codec: event.NewCodec([]byte("k")),
		RecheckInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	chans := []channel.Name{channel.MustMake("test", benchTenant, "a")}
	for u := range 10000 {
		p := auth.Principal{Tenant: benchTenant, User: "user-" + strconv.Itoa(u), Kind: auth.KindJWT,
			Expiry: time.Now().Add(time.Hour), IssuedAt: time.Now()}
		s.reg.add(newConn(p, chans, 16, 1<<20))
	}
	b.ReportAllocs()
	for b.Loop() {
		s.recheck()
	}
}

// TestRecheckGroups: which streams share a gate check (same principal,
// credential and expiry included, same channel list) and which share a
// revocation check (same tenant, user, kind and issue time).
func TestRecheckGroups(t *testing.T) {
	a := channel.MustMake("test", benchTenant, "a")
	b := channel.MustMake("test", benchTenant, "b")
	t0 := time.Unix(1_700_000_000, 0)
	base := auth.Principal{Tenant: benchTenant, User: "u", Kind: auth.KindJWT, IssuedAt: t0, Expiry: t0.Add(time.Hour), Credential: "Bearer x"}
	with := func(f func(*auth.Principal)) auth.Principal { p := base; f(&p); return p }
	type stream struct {
		p     auth.Principal
		chans []channel.Name
	}
	for _, tc := range []struct {
		name        string
		streams     []stream
		gate, valid int64
	}{
		{"one stream", []stream{{base, []channel.Name{a}}}, 1, 1},
		{"same principal, same channels", []stream{{base, []channel.Name{a, b}}, {base, []channel.Name{a, b}}, {base, []channel.Name{a, b}}}, 1, 1},
		{"same principal, other channels", []stream{{base, []channel.Name{a}}, {base, []channel.Name{b}}, {base, []channel.Name{a, b}}}, 3, 1},
		{"channel order counts", []stream{{base, []channel.Name{a, b}}, {base, []channel.Name{b, a}}}, 2, 1},
		{"other credential", []stream{{base, []channel.Name{a}}, {with(func(p *auth.Principal) { p.Credential = "Bearer y" }), []channel.Name{a}}}, 2, 1},
		// StillValid checks expiry too: a verdict of one expiry must not
		// stand for another.
		{"other expiry", []stream{{base, []channel.Name{a}}, {with(func(p *auth.Principal) { p.Expiry = t0.Add(2 * time.Hour) }), []channel.Name{a}}}, 2, 2},
		{"other issue time", []stream{{base, []channel.Name{a}}, {with(func(p *auth.Principal) { p.IssuedAt = t0.Add(time.Second) }), []channel.Name{a}}}, 2, 2},
		{"other user", []stream{{base, []channel.Name{a}}, {with(func(p *auth.Principal) { p.User = "v" }), []channel.Name{a}}, {base, []channel.Name{a}}}, 2, 2},
		{"other kind", []stream{{base, []channel.Name{a}}, {with(func(p *auth.Principal) { p.Kind = auth.KindTicket }), []channel.Name{a}}}, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &faultyChecks{}
			s, err := New(Config{Broker: newBenchEnv(t).b, Auth: f, Gate: f, Codec: event.NewCodec([]byte("k")), RecheckInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, st := range tc.streams {
				s.reg.add(newConn(st.p, st.chans, 16, 1<<20))
			}
			s.recheck()
			if g, v := f.gate.Load(), f.valid.Load(); g != tc.gate || v != tc.valid {
				t.Errorf("%d gate and %d revocation checks, want %d and %d", g, v, tc.gate, tc.valid)
			}
		})
	}
}
