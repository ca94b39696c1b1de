package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
)

// TicketStore keeps stream tickets (protocol.md §2). A broker that shares
// state between instances (the Redis broker) implements it, so that a ticket
// issued by any instance is accepted by every instance; a single instance
// keeps them in a MemoryTickets.
//
// The id passed in is not the ticket a client holds but the hex SHA-256 of
// it, so that the store never holds a redeemable ticket. The stored
// principal does hold the credential the ticket was issued for
// (Principal.Credential); a store keeps it as it keeps any secret.
//
// Implementations are safe for concurrent use. An error means the store
// could not answer (a fault); callers fail closed.
type TicketStore interface {
	// PutTicket stores p under id for ttl.
	PutTicket(ctx context.Context, id string, p Principal, ttl time.Duration) error
	// TakeTicket atomically gets and deletes the principal stored under id,
	// so that a ticket is redeemed at most once across all instances. ok is
	// false when id is unknown, already taken or older than its ttl.
	TakeTicket(ctx context.Context, id string) (p Principal, ok bool, err error)
}

// ErrNoTicketStore is returned by IssueTicket when no TicketStore is
// configured.
var ErrNoTicketStore = errors.New("auth: stream tickets are not supported: no ticket store")

// ticketBytes is the entropy of a ticket: 256 bits.
const ticketBytes = 32

// ticketLen is the length of a ticket: ticketBytes, base64url without padding.
var ticketLen = base64.RawURLEncoding.EncodedLen(ticketBytes)

// IssueTicket issues a single-use stream ticket for p, the principal of a
// request authenticated by its headers (POST /tickets). The ticket is 256
// random bits, base64url-encoded (URL-safe, 43 characters). Redeemed by
// Authenticate (?ticket=), it yields p's user, tenant, expiry and credential,
// with Kind KindTicket and IssuedAt the issue time.
//
// ttl is cfg.TicketTTL, shortened to what is left of p's credential when that
// expires sooner. An already expired p gets a 401 *problem.Problem; a
// *TicketRefusal of a limited store (LimitTickets) is returned as it is (a
// 429 problem); ErrNoTicketStore or another store error are faults.
func (a *Authenticator) IssueTicket(ctx context.Context, p Principal) (ticket string, ttl time.Duration, err error) {
	if a.tickets == nil {
		return "", 0, ErrNoTicketStore
	}
	if p.User == "" || channel.CheckTenant(p.Tenant) != nil {
		return "", 0, errors.New("auth: IssueTicket: principal has no user or no canonical tenant")
	}
	now := a.now()
	if a.expired(p) {
		return "", 0, unauthorized(problem.CodeTokenExpired, "credential expired")
	}
	ttl = a.ticketTTL
	if p.Expires() {
		ttl = min(ttl, p.Expiry.Add(a.leeway).Sub(now))
	}
	var b [ticketBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", 0, fmt.Errorf("auth: ticket: %w", err)
	}
	ticket = base64.RawURLEncoding.EncodeToString(b[:])
	stored := Principal{
		User:       p.User,
		Tenant:     p.Tenant,
		Kind:       KindTicket,
		Expiry:     p.Expiry,
		IssuedAt:   now,
		Credential: p.Credential,
	}
	if err := a.tickets.PutTicket(ctx, ticketID(ticket), stored, ttl); err != nil {
		var refused *TicketRefusal
		if errors.As(err, &refused) {
			return "", 0, err
		}
		return "", 0, fmt.Errorf("auth: storing ticket: %w", err)
	}
	return ticket, ttl, nil
}

// ticketID is the key under which a ticket is stored.
func ticketID(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return hex.EncodeToString(sum[:])
}

// redeem takes a ticket from the store.
func (a *Authenticator) redeem(ctx context.Context, ticket string) (Principal, error) {
	if a.tickets == nil {
		return Principal{}, invalid("tickets are not accepted here")
	}
	if len(ticket) != ticketLen {
		return Principal{}, invalid("malformed ticket")
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(ticket); err != nil {
		return Principal{}, invalid("malformed ticket")
	}
	p, ok, err := a.tickets.TakeTicket(ctx, ticketID(ticket))
	if err != nil {
		return Principal{}, fmt.Errorf("auth: redeeming ticket: %w", err)
	}
	// The store's own expiry may be coarse; the ticket's lifetime is checked
	// here too (with the leeway, as instances' clocks may differ).
	if !ok || p.Kind != KindTicket || p.User == "" || channel.CheckTenant(p.Tenant) != nil ||
		a.now().After(p.IssuedAt.Add(a.ticketTTL+a.leeway)) {
		return Principal{}, invalid("ticket unknown, expired or already used")
	}
	if a.expired(p) {
		return Principal{}, unauthorized(problem.CodeTokenExpired, "the credential of the ticket expired")
	}
	if err := a.checkRevoked(ctx, p); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// MemoryTickets is a TicketStore in process memory, for a single instance
// (with the memory broker, which keeps no tickets) and tests. The zero value
// is ready to use; it is safe for concurrent use. Expired tickets are swept
// as new ones arrive.
type MemoryTickets struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	m       map[string]memTicket
	sweepAt int
}

type memTicket struct {
	p        Principal
	deadline time.Time
}

var _ TicketStore = (*MemoryTickets)(nil)

func (s *MemoryTickets) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// PutTicket implements TicketStore.
func (s *MemoryTickets) PutTicket(_ context.Context, id string, p Principal, ttl time.Duration) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]memTicket)
	}
	if len(s.m) >= max(s.sweepAt, 1024) {
		for k, t := range s.m {
			if !now.Before(t.deadline) {
				delete(s.m, k)
			}
		}
		s.sweepAt = 2 * len(s.m)
	}
	s.m[id] = memTicket{p: p, deadline: now.Add(ttl)}
	return nil
}

// TakeTicket implements TicketStore.
func (s *MemoryTickets) TakeTicket(_ context.Context, id string) (Principal, bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[id]
	if !ok {
		return Principal{}, false, nil
	}
	delete(s.m, id)
	if !now.Before(t.deadline) {
		return Principal{}, false, nil
	}
	return t.p, true, nil
}

// TicketLimits bounds how many stream tickets one user (of one tenant) may
// ask for; a zero field means no bound of that kind.
type TicketLimits struct {
	Rate       float64 // new tickets per second per user
	Burst      int     // burst allowance of Rate (at least 1)
	MaxPerUser int     // tickets issued and neither redeemed nor expired, per user

	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// TicketRefusal is the error of a ticket refused by a limited TicketStore: a
// 429 problem (problem.CodeRateLimited or problem.CodeTooManyTickets) and how long
// to wait before asking again, which the HTTP edge sends as Retry-After.
type TicketRefusal struct {
	*problem.Problem
	After time.Duration
}

// Unwrap returns the problem.
func (r *TicketRefusal) Unwrap() error { return r.Problem }

// RetryAfter returns how long to wait before asking again.
func (r *TicketRefusal) RetryAfter() time.Duration { return r.After }

// LimitTickets returns store bounded by l: PutTicket refuses, with a
// *TicketRefusal, a ticket for a user over the rate or holding MaxPerUser
// outstanding tickets; TakeTicket frees the place of a ticket it redeems.
// The counts are this process's: with a broker shared by several instances,
// a ticket issued here and redeemed elsewhere keeps its place here until it
// expires, and each instance bounds the tickets it issues. Memory is
// bounded by MaxPerUser entries per user with tickets outstanding; users
// with none are forgotten once their rate allowance has refilled.
func LimitTickets(store TicketStore, l TicketLimits) TicketStore {
	if store == nil || l.Rate <= 0 && l.MaxPerUser <= 0 {
		return store
	}
	return &limitedTickets{TicketStore: store, lim: l, users: map[string]*ticketUser{}, byID: map[string]string{}}
}

type limitedTickets struct {
	TicketStore
	lim TicketLimits

	mu      sync.Mutex
	users   map[string]*ticketUser // by tenant "\x00" user
	byID    map[string]string      // ticket id → user key
	sweepAt int
}

type ticketUser struct {
	tokens float64
	last   time.Time
	out    map[string]time.Time // outstanding ticket id → expiry
}

func (s *limitedTickets) now() time.Time {
	if s.lim.Now != nil {
		return s.lim.Now()
	}
	return time.Now()
}

func (s *limitedTickets) burst() float64 { return float64(max(s.lim.Burst, 1)) }

// PutTicket implements TicketStore.
func (s *limitedTickets) PutTicket(ctx context.Context, id string, p Principal, ttl time.Duration) error {
	key := p.Tenant + "\x00" + p.User
	now := s.now()
	s.mu.Lock()
	if len(s.users) >= max(s.sweepAt, 1024) {
		s.sweep(now)
	}
	u := s.users[key]
	if u == nil {
		u = &ticketUser{tokens: s.burst(), last: now}
		s.users[key] = u
	}
	s.prune(u, now)
	if s.lim.MaxPerUser > 0 && len(u.out) >= s.lim.MaxPerUser {
		first := now.Add(ttl)
		for _, exp := range u.out {
			if exp.Before(first) {
				first = exp
			}
		}
		s.mu.Unlock()
		return &TicketRefusal{
			Problem: problem.New(http.StatusTooManyRequests, problem.CodeTooManyTickets,
				"this user holds "+strconv.Itoa(s.lim.MaxPerUser)+" unused tickets, the most allowed; use one, or wait for one to expire"),
			After: max(first.Sub(now), time.Millisecond),
		}
	}
	if s.lim.Rate > 0 {
		if el := now.Sub(u.last).Seconds(); el > 0 {
			u.tokens = min(s.burst(), u.tokens+el*s.lim.Rate)
			u.last = now
		}
		if u.tokens < 1 {
			wait := time.Duration(min((1-u.tokens)/s.lim.Rate, 86400) * float64(time.Second))
			s.mu.Unlock()
			wait = max(wait, time.Millisecond)
			return &TicketRefusal{
				Problem: problem.New(http.StatusTooManyRequests, problem.CodeRateLimited,
					"too many tickets asked for by this user; retry in "+strconv.FormatInt(max(int64(math.Ceil(wait.Seconds())), 1), 10)+" s"),
				After: wait,
			}
		}
		u.tokens--
	}
	if s.lim.MaxPerUser > 0 {
		if u.out == nil {
			u.out = make(map[string]time.Time)
		}
		u.out[id] = now.Add(ttl)
		s.byID[id] = key
	}
	s.mu.Unlock()
	if err := s.TicketStore.PutTicket(ctx, id, p, ttl); err != nil {
		s.forget(id)
		return err
	}
	return nil
}

// TakeTicket implements TicketStore.
func (s *limitedTickets) TakeTicket(ctx context.Context, id string) (Principal, bool, error) {
	p, ok, err := s.TicketStore.TakeTicket(ctx, id)
	if err == nil {
		s.forget(id) // redeemed, or unknown to the store: its place is free
	}
	return p, ok, err
}

// forget frees the place of ticket id.
func (s *limitedTickets) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.byID[id]
	if !ok {
		return
	}
	delete(s.byID, id)
	if u := s.users[key]; u != nil {
		delete(u.out, id)
	}
}

// prune drops u's expired tickets; mu is held.
func (s *limitedTickets) prune(u *ticketUser, now time.Time) {
	for id, exp := range u.out {
		if !now.Before(exp) {
			delete(u.out, id)
			delete(s.byID, id)
		}
	}
}

// sweep forgets users with no outstanding ticket and a full allowance; mu
// is held.
func (s *limitedTickets) sweep(now time.Time) {
	for key, u := range s.users {
		s.prune(u, now)
		refilled := s.lim.Rate <= 0 || u.tokens+now.Sub(u.last).Seconds()*s.lim.Rate >= s.burst()
		if len(u.out) == 0 && refilled {
			delete(s.users, key)
		}
	}
	s.sweepAt = 2 * len(s.users)
}
