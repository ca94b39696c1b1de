package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/problem"
)

// mapStore is a TicketStore that ignores TTLs, so the Authenticator's own
// checks are exercised.
type mapStore struct {
	mu sync.Mutex
	m  map[string]auth.Principal
}

func (s *mapStore) PutTicket(_ context.Context, id string, p auth.Principal, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]auth.Principal{}
	}
	s.m[id] = p
	return nil
}

func (s *mapStore) TakeTicket(_ context.Context, id string) (auth.Principal, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[id]
	delete(s.m, id)
	return p, ok, nil
}

// ticketEnv is an authenticator with tickets, a settable clock and a JWT
// principal.
func ticketEnv(t *testing.T, store auth.TicketStore, exp time.Duration) (*auth.Authenticator, *clock, auth.Principal) {
	t.Helper()
	c := newClock()
	a := newAuth(t, config{JWTSecret: secret, Tickets: store, Now: c.Now})
	tok := hs256(t, claims(c.Now(), set("exp", c.Now().Add(exp).Unix())))
	p, err := a.Authenticate(request("", "Bearer "+tok), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a, c, p
}

func redeem(a *auth.Authenticator, ticket string) (auth.Principal, error) {
	return a.Authenticate(request("ticket="+ticket), auth.Options{Query: true})
}

func TestTicketSingleUse(t *testing.T) {
	c := newClock()
	a, _, p := ticketEnv(t, &auth.MemoryTickets{Now: c.Now}, time.Hour)
	ticket, ttl, err := a.IssueTicket(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if ttl != auth.DefaultTicketTTL {
		t.Fatalf("ttl %v", ttl)
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(ticket); err != nil || len(b) != 32 {
		t.Fatalf("ticket %q is not 256 bits of base64url", ticket)
	}
	got, err := redeem(a, ticket)
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Principal{User: p.User, Tenant: p.Tenant, Kind: auth.KindTicket, Expiry: p.Expiry,
		IssuedAt: epoch, Credential: p.Credential}
	if got != want {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if _, err := redeem(a, ticket); code(t, err) != problem.CodeInvalidToken {
		t.Fatalf("replay: %v", err)
	}
	// Not consulted without Options.Query, nor with an Authorization header.
	ticket, _, _ = a.IssueTicket(context.Background(), p)
	if _, err := a.Authenticate(request("ticket="+ticket), auth.Options{}); code(t, err) != problem.CodeMissingCredentials {
		t.Fatalf("ticket used without Query: %v", err)
	}
	if _, err := a.Authenticate(request("ticket="+ticket, "Bearer x"), auth.Options{Query: true}); code(t, err) != problem.CodeInvalidToken {
		t.Fatalf("ticket used despite a header: %v", err)
	}
	if _, err := redeem(a, ticket); err != nil {
		t.Fatalf("ticket consumed by a refused request: %v", err)
	}
}

func TestTicketConcurrentRedeem(t *testing.T) {
	a, _, p := ticketEnv(t, &auth.MemoryTickets{}, time.Hour)
	ticket, _, err := a.IssueTicket(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := redeem(a, ticket); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d redemptions succeeded, want 1", ok.Load())
	}
}

func TestTicketSharedAcrossInstances(t *testing.T) {
	store := &auth.MemoryTickets{}
	a, _, p := ticketEnv(t, store, time.Hour)
	b := newAuth(t, config{JWTSecret: secret, Tickets: store, Now: func() time.Time { return epoch }})
	ticket, _, err := a.IssueTicket(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := redeem(b, ticket); err != nil || got.User != p.User {
		t.Fatalf("redeemed on another instance: %v %v", got, err)
	}
}

func TestTicketExpiry(t *testing.T) {
	t.Run("store ttl", func(t *testing.T) {
		c := newClock()
		store := &auth.MemoryTickets{Now: c.Now}
		a := newAuth(t, config{JWTSecret: secret, Tickets: store, Now: c.Now})
		p := auth.Principal{User: "u1", Tenant: tenantA, Kind: auth.KindJWT, Expiry: epoch.Add(time.Hour)}
		ticket, _, _ := a.IssueTicket(context.Background(), p)
		c.Advance(auth.DefaultTicketTTL)
		if _, err := redeem(a, ticket); code(t, err) != problem.CodeInvalidToken {
			t.Fatalf("expired ticket: %v", err)
		}
	})
	t.Run("lifetime checked even if the store keeps it", func(t *testing.T) {
		a, c, p := ticketEnv(t, &mapStore{}, time.Hour)
		ticket, _, _ := a.IssueTicket(context.Background(), p)
		c.Advance(auth.DefaultTicketTTL + time.Second)
		if _, err := redeem(a, ticket); code(t, err) != problem.CodeInvalidToken {
			t.Fatalf("old ticket: %v", err)
		}
	})
	t.Run("credential expires first", func(t *testing.T) {
		a, c, p := ticketEnv(t, &mapStore{}, 10*time.Second)
		ticket, ttl, err := a.IssueTicket(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if ttl != 10*time.Second {
			t.Fatalf("ttl %v, want the credential's remaining 10s", ttl)
		}
		c.Advance(10 * time.Second)
		if _, err := redeem(a, ticket); code(t, err) != problem.CodeTokenExpired {
			t.Fatalf("ticket of an expired credential: %v", err)
		}
	})
	t.Run("expired principal", func(t *testing.T) {
		a, c, p := ticketEnv(t, &mapStore{}, 10*time.Second)
		c.Advance(11 * time.Second)
		if _, _, err := a.IssueTicket(context.Background(), p); code(t, err) != problem.CodeTokenExpired {
			t.Fatalf("ticket for an expired principal: %v", err)
		}
	})
	t.Run("api key principal never expires", func(t *testing.T) {
		a := newAuth(t, config{APIKeysFile: apiKeysFile(t), Tickets: &auth.MemoryTickets{}})
		p, err := a.Authenticate(request("", "Api-Key "+apiKey1), auth.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ticket, _, err := a.IssueTicket(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := redeem(a, ticket)
		if err != nil || got.Expires() || got.Credential != "Api-Key "+apiKey1 {
			t.Fatalf("%#v %v", got, err)
		}
	})
}

func TestTicketStoredHashed(t *testing.T) {
	store := &mapStore{}
	a, _, p := ticketEnv(t, store, time.Hour)
	ticket, _, _ := a.IssueTicket(context.Background(), p)
	for id := range store.m {
		if strings.Contains(id, ticket) {
			t.Fatal("the store holds the ticket itself")
		}
	}
}

func TestTicketFaults(t *testing.T) {
	a, _, p := ticketEnv(t, nil, time.Hour)
	if _, _, err := a.IssueTicket(context.Background(), p); !errors.Is(err, auth.ErrNoTicketStore) {
		t.Fatalf("no store: %v", err)
	}
	if _, err := redeem(a, strings.Repeat("A", 43)); code(t, err) != problem.CodeInvalidToken {
		t.Fatalf("ticket without store: %v", err)
	}
	a, _, p = ticketEnv(t, failing{}, time.Hour)
	if _, _, err := a.IssueTicket(context.Background(), p); err == nil || isProblem(err) {
		t.Fatalf("store down on issue: %v, want a fault", err)
	}
	if _, err := redeem(a, strings.Repeat("A", 43)); !errors.Is(err, errDown) || isProblem(err) {
		t.Fatalf("store down on redeem: %v, want a fault", err)
	}
}

func isProblem(err error) bool {
	_, ok := problem.As(err)
	return ok
}

// TestLimitTickets drives a limited store with a fake clock: the rate and
// the cap refuse with a 429 problem and a wait; redemption and expiry free
// places; other users are not held back; idle users are forgotten.
func TestLimitTickets(t *testing.T) {
	c := newClock()
	inner := &auth.MemoryTickets{Now: c.Now}
	s := auth.LimitTickets(inner, auth.TicketLimits{Rate: 2, Burst: 3, MaxPerUser: 4, Now: c.Now})
	ctx := context.Background()
	alice := auth.Principal{User: "alice", Tenant: "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"}
	bob := auth.Principal{User: "bob", Tenant: alice.Tenant}
	const ttl = 30 * time.Second
	put := func(id string, p auth.Principal) error { return s.PutTicket(ctx, id, p, ttl) }
	refusal := func(err error, code string) time.Duration {
		t.Helper()
		var r *auth.TicketRefusal
		if !errors.As(err, &r) || r.Status != 429 || r.Code != code || r.RetryAfter() <= 0 {
			t.Fatalf("got %v, want a 429 %s refusal with a wait", err, code)
		}
		return r.RetryAfter()
	}

	for i := range 3 { // the burst
		if err := put("a"+strconv.Itoa(i), alice); err != nil {
			t.Fatal(err)
		}
	}
	if d := refusal(put("a3", alice), problem.CodeRateLimited); d != 500*time.Millisecond {
		t.Fatalf("wait %v, want 500ms at 2/s", d)
	}
	if err := put("b0", bob); err != nil {
		t.Fatalf("another user held back: %v", err)
	}
	c.Advance(500 * time.Millisecond)
	if err := put("a3", alice); err != nil {
		t.Fatal(err)
	}
	c.Advance(10 * time.Second) // the rate allows again; the cap (4) does not
	d := refusal(put("a4", alice), problem.CodeTooManyTickets)
	if d > ttl {
		t.Fatalf("wait %v beyond the ticket lifetime", d)
	}
	// Redeeming a ticket frees its place.
	if _, ok, err := s.TakeTicket(ctx, "a0"); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	if err := put("a4", alice); err != nil {
		t.Fatalf("after a redemption: %v", err)
	}
	refusal(put("a5", alice), problem.CodeTooManyTickets)
	// Expiry frees them all.
	c.Advance(ttl)
	for i := range 3 {
		if err := put("c"+strconv.Itoa(i), alice); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
	}
	// A refused ticket is not stored.
	if _, ok, _ := inner.TakeTicket(ctx, "a5"); ok {
		t.Fatal("a refused ticket was stored")
	}
}

// TestLimitTicketsThroughIssue: IssueTicket returns the refusal itself (a
// 429 problem with a wait), not a fault.
func TestLimitTicketsThroughIssue(t *testing.T) {
	store := auth.LimitTickets(&mapStore{}, auth.TicketLimits{Rate: 1, Burst: 1})
	a, _, p := ticketEnv(t, store, time.Hour)
	if _, _, err := a.IssueTicket(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	_, _, err := a.IssueTicket(context.Background(), p)
	var ra interface{ RetryAfter() time.Duration }
	if pr, ok := problem.As(err); !ok || pr.Status != 429 || !errors.As(err, &ra) || ra.RetryAfter() <= 0 {
		t.Fatalf("got %v", err)
	}
	if auth.LimitTickets(store, auth.TicketLimits{}) != store {
		t.Fatal("no limits should return the store itself")
	}
}

// TestLimitTicketsMemoryBounded floods one user for a simulated minute and
// asks for tickets for 20,000 users once each: what the limiter keeps stays
// bounded by the cap and forgets idle users.
func TestLimitTicketsMemoryBounded(t *testing.T) {
	c := newClock()
	s := auth.LimitTickets(discardStore{}, auth.TicketLimits{Rate: 10, Burst: 32, MaxPerUser: 64, Now: c.Now})
	ctx := context.Background()
	p := auth.Principal{User: "flood", Tenant: "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"}
	issued := 0
	for i := range 60_000 {
		if i%1000 == 0 {
			c.Advance(time.Second)
		}
		if s.PutTicket(ctx, "f"+strconv.Itoa(i), p, 30*time.Second) == nil {
			issued++
		}
	}
	if issued > 64+10*60 { // never more than the cap outstanding, nor the rate
		t.Fatalf("%d issued", issued)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 20_000 {
		c.Advance(10 * time.Millisecond)
		_ = s.PutTicket(ctx, "u"+strconv.Itoa(i), auth.Principal{User: "u" + strconv.Itoa(i), Tenant: p.Tenant}, time.Second)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if g := int64(after.HeapAlloc) - int64(before.HeapAlloc); g > 1<<20 {
		t.Fatalf("heap grew %d KiB for users that each asked once", g>>10)
	}
}

// discardStore is a TicketStore that keeps nothing, so that only the
// limiter's own memory is measured.
type discardStore struct{}

func (discardStore) PutTicket(context.Context, string, auth.Principal, time.Duration) error {
	return nil
}

func (discardStore) TakeTicket(context.Context, string) (auth.Principal, bool, error) {
	return auth.Principal{}, false, nil
}
