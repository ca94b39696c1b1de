package brokertest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
)

// Stream tickets and revocations: what auth needs of a broker. Revocations
// are part of every broker.Broker; tickets only of a broker that shares them
// between instances, which implements auth.TicketStore.

// ticketStore returns b's tickets, or skips the test when a single-instance
// broker keeps none (auth.MemoryTickets keeps them in the process). A broker
// shared by several instances must keep them: a ticket issued by one
// instance is redeemed by whichever instance the stream reaches.
func ticketStore(t *testing.T, b broker.Broker, shared bool) auth.TicketStore {
	t.Helper()
	ts, ok := b.(auth.TicketStore)
	switch {
	case !ok && shared:
		t.Fatalf("%T is shared by several instances but does not implement auth.TicketStore", b)
	case !ok:
		t.Skipf("%T keeps no stream tickets", b)
	}
	return ts
}

func principal() auth.Principal {
	now := time.Now().Truncate(time.Millisecond)
	return auth.Principal{
		User:       "user-1",
		Tenant:     tenant(),
		Kind:       auth.KindTicket,
		Expiry:     now.Add(time.Hour),
		IssuedAt:   now,
		Credential: "Bearer x.y.z",
	}
}

func samePrincipal(a, b auth.Principal) bool {
	return a.User == b.User && a.Tenant == b.Tenant && a.Kind == b.Kind && a.Expiry.Equal(b.Expiry) &&
		a.IssuedAt.Equal(b.IssuedAt) && a.Credential == b.Credential
}

func testTickets(t *testing.T, nb NewBroker) {
	b := ticketStore(t, nb(t, broker.Options{}), false)
	checkTickets(t, b, b)
	t.Run("expired", func(t *testing.T) {
		if err := b.PutTicket(ctx(t), "t-short", principal(), 5*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		// Waiting for the ticket's lifetime to pass, not for another goroutine.
		time.Sleep(50 * time.Millisecond)
		if _, ok, err := b.TakeTicket(ctx(t), "t-short"); err != nil || ok {
			t.Fatalf("TakeTicket after expiry = %v, %v; want false", ok, err)
		}
	})
}

// checkTickets puts a ticket on a and takes it on b, once.
func checkTickets(t *testing.T, a, b auth.TicketStore) {
	t.Helper()
	p := principal()
	id := "t-" + tenant()
	if err := a.PutTicket(ctx(t), id, p, 30*time.Second); err != nil {
		t.Fatalf("PutTicket: %v", err)
	}
	got, ok, err := b.TakeTicket(ctx(t), id)
	if err != nil || !ok || !samePrincipal(got, p) {
		t.Fatalf("TakeTicket = %#v, %v, %v; want %#v", got, ok, err, p)
	}
	for _, x := range []auth.TicketStore{a, b} {
		if _, ok, err := x.TakeTicket(ctx(t), id); err != nil || ok {
			t.Fatalf("second TakeTicket = %v, %v; want false", ok, err)
		}
	}
	if _, ok, err := b.TakeTicket(ctx(t), "unknown"); err != nil || ok {
		t.Fatalf("TakeTicket(unknown) = %v, %v; want false", ok, err)
	}
}

// revocations records what OnRevoke reports.
type revocations struct {
	mu  sync.Mutex
	got []broker.Revocation
}

func (r *revocations) add(rv broker.Revocation) {
	r.mu.Lock()
	r.got = append(r.got, rv)
	r.mu.Unlock()
}

func (r *revocations) wait(t *testing.T, want broker.Revocation) {
	t.Helper()
	eventually(t, fmt.Sprintf("OnRevoke(%v)", want), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, g := range r.got {
			if g.Tenant == want.Tenant && g.User == want.User && g.At.Equal(want.At) {
				return true
			}
		}
		return false
	})
}

func revokedAt(t *testing.T, b broker.Broker, tenant, user string) (time.Time, bool) {
	t.Helper()
	at, ok, err := b.RevokedAt(ctx(t), tenant, user)
	if err != nil {
		t.Fatalf("RevokedAt: %v", err)
	}
	return at, ok
}

func testRevocations(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	checkRevocations(t, b, b)
}

// checkRevocations revokes on a and checks on b.
func checkRevocations(t *testing.T, a, b broker.Broker) {
	t.Helper()
	var seenA, seenB revocations
	a.OnRevoke(seenA.add)
	if b != a {
		b.OnRevoke(seenB.add)
	}
	ten := tenant()
	t0 := time.Now().Truncate(time.Second)
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	if _, ok := revokedAt(t, b, ten, "u1"); ok {
		t.Fatal("revoked before any revocation")
	}
	check := func(user string, want time.Time) {
		t.Helper()
		at, ok := revokedAt(t, b, ten, user)
		if want.IsZero() != !ok || !at.Equal(want) {
			t.Fatalf("RevokedAt(%s) = %v, %v; want %v", user, at, ok, want)
		}
	}

	r := broker.Revocation{Tenant: ten, User: "u1", At: t1}
	if err := a.Revoke(ctx(t), r, time.Hour); err != nil {
		t.Fatal(err)
	}
	seenA.wait(t, r)
	if b != a {
		seenB.wait(t, r)
	}
	check("u1", t1)
	check("u2", time.Time{})

	// The tenant, later: it covers every user and wins over u1's.
	r = broker.Revocation{Tenant: ten, At: t2}
	if err := a.Revoke(ctx(t), r, time.Hour); err != nil {
		t.Fatal(err)
	}
	seenA.wait(t, r)
	check("u1", t2)
	check("u2", t2)

	// An earlier revocation does not hide a later one.
	if err := a.Revoke(ctx(t), broker.Revocation{Tenant: ten, User: "u1", At: t0}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx(t), broker.Revocation{Tenant: ten, At: t0}, time.Hour); err != nil {
		t.Fatal(err)
	}
	check("u1", t2)
	check("u2", t2)
	if _, ok := revokedAt(t, b, tenant(), "u1"); ok {
		t.Fatal("revocation leaked into another tenant")
	}
}

func testRevocationExpires(t *testing.T, nb NewBroker) {
	b := nb(t, broker.Options{})
	ten := tenant()
	if err := b.Revoke(ctx(t), broker.Revocation{Tenant: ten, User: "u", At: time.Now()}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revocation to expire", func() bool {
		_, ok := revokedAt(t, b, ten, "u")
		return !ok
	})
}
