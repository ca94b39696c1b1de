package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/problem"
)

// Revocations answers which credentials were revoked (protocol.md §6, POST /revoke).
// Revocations live in the broker, so that every instance sees them: every
// broker.Broker implements Revocations (its RevokedAt method).
//
// Implementations are safe for concurrent use. An error means the source
// could not answer (a fault); callers fail closed.
type Revocations interface {
	// RevokedAt returns the latest revocation still in force (for
	// SLUICE_REVOCATION_TTL) that covers user in tenant: one naming that user
	// or one naming the whole tenant. ok is false when there is none.
	RevokedAt(ctx context.Context, tenant, user string) (at time.Time, ok bool, err error)
}

// Revoked reports whether a revocation at time at refuses p (protocol.md §6):
//
//   - a JWT whose iat, in whole seconds, is not later than at, or that has
//     no iat;
//   - a ticket issued not later than at;
//   - an API key (or any other kind), always: it has no issue time, so it is
//     refused as long as the revocation is in force.
func Revoked(p Principal, at time.Time) bool {
	switch p.Kind {
	case KindJWT:
		return p.IssuedAt.IsZero() || time.Unix(p.IssuedAt.Unix(), 0).Compare(at) <= 0
	case KindTicket:
		return p.IssuedAt.IsZero() || !p.IssuedAt.After(at)
	}
	return true
}

// checkRevoked returns a 401 problem if p is revoked, a fault if that cannot
// be known.
func (a *Authenticator) checkRevoked(ctx context.Context, p Principal) error {
	if a.revs == nil {
		return nil
	}
	at, ok, err := a.revs.RevokedAt(ctx, p.Tenant, p.User)
	if err != nil {
		return fmt.Errorf("auth: revocation check: %w", err)
	}
	if ok && Revoked(p, at) {
		return unauthorized(problem.CodeCredentialRevoked, "credential revoked")
	}
	return nil
}

// StillValid re-checks the principal of an open stream: it returns a 401
// *problem.Problem with CodeTokenExpired once p's credential has expired
// (leeway included), with CodeCredentialRevoked once a revocation covers it,
// nil while it is valid, and a fault (a non-problem error) when the
// revocation source cannot answer.
func (a *Authenticator) StillValid(ctx context.Context, p Principal) error {
	if a.expired(p) {
		return unauthorized(problem.CodeTokenExpired, "credential expired")
	}
	return a.checkRevoked(ctx, p)
}

// MemoryRevocations is a Revocations in process memory, for a single
// instance (the memory broker keeps its revocations in one) and tests. The
// zero value is ready to use; Revoke keeps revocations forever unless TTL is
// set. It is safe for concurrent use. Revocations no longer in force are
// forgotten as new ones are recorded.
type MemoryRevocations struct {
	// TTL is how long a revocation made by Revoke stays in force
	// (SLUICE_REVOCATION_TTL); zero means forever.
	TTL time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
	m  map[[2]string]memRevocation // {tenant, user} ("" user: whole tenant)
}

// memRevocation is a revocation made at at, in force until until (zero:
// forever).
type memRevocation struct{ at, until time.Time }

func (r memRevocation) inForce(now time.Time) bool {
	return r.until.IsZero() || now.Before(r.until)
}

var _ Revocations = (*MemoryRevocations)(nil)

func (s *MemoryRevocations) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Revoke records a revocation of user in tenant at the current time, in
// force for TTL; an empty user revokes the whole tenant. It returns the time
// recorded.
func (s *MemoryRevocations) Revoke(tenant, user string) time.Time {
	now := s.now()
	var until time.Time
	if s.TTL > 0 {
		until = now.Add(s.TTL)
	}
	s.Record(tenant, user, now, until)
	return now
}

// Record records a revocation of user in tenant (an empty user: the whole
// tenant) made at at and in force until until; a zero until means forever.
// Of two revocations of the same user, or of the same whole tenant, the one
// made later is kept.
func (s *MemoryRevocations) Record(tenant, user string, at, until time.Time) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[[2]string]memRevocation)
	}
	for k, r := range s.m {
		if !r.inForce(now) {
			delete(s.m, k)
		}
	}
	k := [2]string{tenant, user}
	if r, ok := s.m[k]; !ok || r.at.Before(at) {
		s.m[k] = memRevocation{at: at, until: until}
	}
}

// RevokedAt implements Revocations.
func (s *MemoryRevocations) RevokedAt(_ context.Context, tenant, user string) (time.Time, bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var latest time.Time
	found := false
	for _, k := range [...][2]string{{tenant, user}, {tenant, ""}} {
		r, ok := s.m[k]
		if !ok || !r.inForce(now) {
			continue
		}
		if !found || r.at.After(latest) {
			latest, found = r.at, true
		}
	}
	return latest, found, nil
}
