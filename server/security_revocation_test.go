package server_test

// Security, access withdrawn while streaming: a member removed from the
// membership source, and POST /revoke of a user or a whole tenant.
// docs/security.md maps each threat to the test that proves its defence.

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/server"
)

// flipMembership is a membership source whose answers a test changes.
type flipMembership struct {
	mu      sync.RWMutex
	removed map[string]bool // tenant/user
	calls   atomic.Int64
}

func (m *flipMembership) IsMember(_ context.Context, p auth.Principal, tenant string) (bool, error) {
	m.calls.Add(1)
	m.mu.RLock()
	defer m.mu.RUnlock()
	return p.Tenant == tenant && !m.removed[tenant+"/"+p.User], nil
}

func (m *flipMembership) remove(tenant, user string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.removed == nil {
		m.removed = map[string]bool{}
	}
	m.removed[tenant+"/"+user] = true
}

// TestSecurityRemovedMember removes a member while it streams: the recheck
// ends its streams with access-revoked and refuses new ones (403); other
// members keep streaming.
func TestSecurityRemovedMember(t *testing.T) {
	m := &flipMembership{}
	e := newEnv(t, func(c *server.Config) { c.RecheckInterval = 200 * time.Millisecond }, server.WithMembership(m))
	ch := chanName("doc", tenantA, "m")
	q := url.Values{"channel": {ch}}
	gone := open(t, e.eventsURL(q), bearer(token(t, "gone", tenantA, time.Hour, nil)))
	gone.expect("stream-open")
	stays := open(t, e.eventsURL(q), bearer(token(t, "stays", tenantA, time.Hour, nil)))
	stays.expect("stream-open")

	m.remove(tenantA, "gone")
	removed := time.Now()
	if c := gone.streamError(2 * time.Second); c != "access-revoked" {
		t.Fatalf("condition %q, want access-revoked", c)
	}
	if d := time.Since(removed); d > 200*time.Millisecond+time.Second {
		t.Fatalf("ended %v after the removal; the recheck runs every 200ms", d)
	}
	gone.ended(2 * time.Second)
	refused(t, e.eventsURL(q), bearer(token(t, "gone", tenantA, time.Hour, nil)), 403, "not_member")

	e.mustPublish(ch, "doc.updated", 1)
	if ev := stays.expect("doc.updated"); ev.Data != "1" {
		t.Fatalf("remaining member got %s", ev.Data)
	}
}

// nextSecond waits for the clock's next whole second and returns it: a
// credential issued then (iat counts whole seconds) is clear of a revocation
// made before, without an iat in the future, which is refused.
func nextSecond() time.Time {
	next := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(next))
	return next
}

// TestSecurityRevoke revokes a user, then a whole tenant, while they stream:
// their streams end with access-revoked within 1 s, their old tokens,
// tickets and query tokens are refused (401), tokens issued after the
// revocation are accepted, and nobody else is touched.
func TestSecurityRevoke(t *testing.T) {
	e := newEnv(t, nil)
	chA := chanName("doc", tenantA, "rv")
	chB := chanName("doc", tenantB, "rv")
	qA, qB := url.Values{"channel": {chA}}, url.Values{"channel": {chB}}
	oldTok := token(t, "u1", tenantA, time.Hour, nil)
	otherUser := token(t, "u2", tenantA, time.Hour, nil)
	sameIDOtherTenant := token(t, "u1", tenantB, time.Hour, nil)
	oldTicket := issueTicket(t, e, oldTok)

	victims := []*stream{
		open(t, e.eventsURL(qA), bearer(oldTok)),
		open(t, e.eventsURL(url.Values{"channel": {chA}, "access_token": {oldTok}}), nil),
		open(t, e.eventsURL(url.Values{"channel": {chA}, "ticket": {issueTicket(t, e, oldTok)}}), nil),
	}
	bystanders := []*stream{
		open(t, e.eventsURL(qA), bearer(otherUser)),
		open(t, e.eventsURL(qB), bearer(sameIDOtherTenant)),
	}
	for _, s := range append(slices.Clone(victims), bystanders...) {
		s.expect("stream-open")
	}

	// Only a publisher key may revoke.
	for _, key := range []string{"wrong-publisher-key-0000000", oldTok} {
		if st, _ := postRevoke(t, e, key, map[string]string{"tenant": tenantA, "user": "u1"}); st != 401 {
			t.Fatalf("revoke with a non-publisher key: %d", st)
		}
	}
	if st, _ := postRevoke(t, e, testPublishKey, map[string]string{"tenant": "not-a-uuid"}); st != 400 {
		t.Fatalf("revoke of a malformed tenant: %d", st)
	}

	at := time.Now()
	if st, reply := postRevoke(t, e, testPublishKey, map[string]string{"tenant": tenantA, "user": "u1"}); st != 200 {
		t.Fatalf("revoke: %d %v", st, reply)
	}
	for i, s := range victims {
		if c := s.streamError(2 * time.Second); c != "access-revoked" {
			t.Fatalf("victim %d: %q", i, c)
		}
		if d := time.Since(at); d > time.Second {
			t.Fatalf("victim %d ended %v after the revocation", i, d)
		}
		s.ended(time.Second)
	}
	e.mustPublish(chA, "doc.updated", "a")
	e.mustPublish(chB, "doc.updated", "b")
	bystanders[0].expect("doc.updated")
	bystanders[1].expect("doc.updated")

	refused(t, e.eventsURL(qA), bearer(oldTok), 401, "credential_revoked")
	refused(t, e.eventsURL(url.Values{"channel": {chA}, "access_token": {oldTok}}), nil, 401, "credential_revoked")
	refused(t, e.eventsURL(url.Values{"channel": {chA}, "ticket": {oldTicket}}), nil, 401, "credential_revoked")
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+oldTok)
	if st, _ := doJSON(t, req); st != 401 {
		t.Fatalf("a revoked token got a ticket: %d", st)
	}
	// A token issued after the revocation (iat in whole seconds, so clear of
	// the revocation's second) is accepted.
	fresh := token(t, "u1", tenantA, time.Hour, map[string]any{"iat": nextSecond().Unix()})
	open(t, e.eventsURL(qA), bearer(fresh)).expect("stream-open")

	t.Run("whole tenant", func(t *testing.T) {
		a1 := open(t, e.eventsURL(qA), bearer(otherUser))
		a2 := open(t, e.eventsURL(qA), bearer(token(t, "u3", tenantA, time.Hour, nil)))
		b1 := open(t, e.eventsURL(qB), bearer(sameIDOtherTenant))
		for _, s := range []*stream{a1, a2, b1} {
			s.expect("stream-open")
		}
		at := time.Now()
		if st, reply := postRevoke(t, e, testPublishKey, map[string]string{"tenant": tenantA}); st != 200 {
			t.Fatalf("revoke: %d %v", st, reply)
		}
		for i, s := range []*stream{a1, a2} {
			if c := s.streamError(2 * time.Second); c != "access-revoked" {
				t.Fatalf("stream %d: %q", i, c)
			}
		}
		if d := time.Since(at); d > time.Second {
			t.Fatalf("ended %v after the revocation", d)
		}
		refused(t, e.eventsURL(qA), bearer(otherUser), 401, "credential_revoked")
		e.mustPublish(chB, "doc.updated", "still here")
		if ev := b1.expect("doc.updated"); ev.Data != `"still here"` {
			t.Fatalf("tenant B got %s", ev.Data)
		}
		late := token(t, "u9", tenantA, time.Hour, map[string]any{"iat": nextSecond().Unix()})
		open(t, e.eventsURL(qA), bearer(late)).expect("stream-open")
	})
}
