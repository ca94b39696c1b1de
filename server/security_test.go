package server_test

// End-to-end security tests over real HTTP: tenant isolation, forged and
// replayed credentials, revocation, connection limits, goroutine leaks,
// secrets in logs and slow-loris clients. docs/security.md maps each threat
// to the test here (or elsewhere) that proves its defence.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/syncbuf"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/server"
)

const tenantC = "c0ffee00-1234-4abc-8def-0123456789ab"

// issueTicket asks POST /tickets for a ticket with header credential tok.
func issueTicket(t testing.TB, e *env, tok string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	st, reply := doJSON(t, req)
	tk, _ := reply["ticket"].(string)
	if st != http.StatusOK || tk == "" {
		t.Fatalf("POST /tickets: %d %v", st, reply)
	}
	return tk
}

// refused opens rawURL and checks that it is refused with status and code
// (any code when code is empty).
func refused(t *testing.T, rawURL string, h http.Header, status int, code string) map[string]any {
	t.Helper()
	s, resp := tryOpen(t, rawURL, h)
	if s != nil {
		t.Fatalf("GET %s opened a stream, want %d %s", redactURL(rawURL), status, code)
	}
	if resp.StatusCode != status {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d (%s), want %d %s", resp.StatusCode, body, status, code)
	}
	p := problemOf(t, resp)
	if code != "" && p["code"] != code {
		t.Fatalf("code %v, want %s", p["code"], code)
	}
	return p
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return auth.RedactURL(u)
}

// streamError reads until the stream-error event and returns its condition.
func (s *stream) streamError(d time.Duration) string {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("stream ended without stream-error")
			}
			if ev.Type != "stream-error" {
				continue
			}
			var c struct{ Condition string }
			if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
				s.t.Fatalf("stream-error data %q", ev.Data)
			}
			return c.Condition
		case <-deadline:
			s.t.Fatalf("no stream-error within %v", d)
			return ""
		}
	}
}

// TestSecurityTenantIsolationRandomized opens dozens of streams for users of
// three tenants on random channels of their own tenant, with every kind of
// stream credential, publishes thousands of events to random channels of all
// tenants, and checks that no frame reaches a principal of another tenant and
// that every stream got exactly its channels' events, in order.
func TestSecurityTenantIsolationRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := mrand.New(mrand.NewPCG(seed, 0x5eed))
	e := newEnv(t, nil)

	tenants := []string{tenantA, tenantB, tenantC}
	const users, streamsPerUser, chansPerTenant, events = 4, 3, 5, 3000
	pool := map[string][]string{}
	var all []string
	for _, tn := range tenants {
		for i := range chansPerTenant {
			ch := chanName("doc", tn, fmt.Sprint("r", i))
			pool[tn] = append(pool[tn], ch)
			all = append(all, ch)
		}
	}
	tenantOf := func(ch string) string { return must(channel.Parse(ch)).Tenant() }

	type sub struct {
		tenant, user string
		chans        []string
		s            *stream
	}
	var subs []*sub
	for _, tn := range tenants {
		for u := range users {
			user := fmt.Sprint("user-", u)
			tok := token(t, user, tn, time.Hour, nil)
			for range streamsPerUser {
				n := 1 + rnd.IntN(3)
				chans := slices.Clone(pool[tn])
				rnd.Shuffle(len(chans), func(i, j int) { chans[i], chans[j] = chans[j], chans[i] })
				chans = chans[:n]
				q := url.Values{"channel": chans}
				var h http.Header
				switch rnd.IntN(3) {
				case 0:
					h = bearer(tok)
				case 1:
					q.Set("access_token", tok)
				case 2:
					q.Set("ticket", issueTicket(t, e, tok))
				}
				s := open(t, e.eventsURL(q), h)
				s.expect("stream-open")
				subs = append(subs, &sub{tenant: tn, user: user, chans: chans, s: s})
			}
		}
	}

	// Publish in batches from one publisher, so that each channel's order is
	// the order of seq.
	seq := map[string]int{}
	for sent := 0; sent < events; {
		var batch []map[string]any
		for range min(100, events-sent) {
			ch := all[rnd.IntN(len(all))]
			seq[ch]++
			batch = append(batch, map[string]any{"channel": ch, "event": "doc.updated",
				"data": map[string]any{"tenant": tenantOf(ch), "ch": ch, "seq": seq[ch]}})
			sent++
		}
		if st, reply := e.publish(map[string]any{"events": batch}); st != http.StatusOK {
			t.Fatalf("publish: %d %v", st, reply)
		}
	}
	// A last event on every channel marks its end.
	var ends []map[string]any
	for _, ch := range all {
		ends = append(ends, map[string]any{"channel": ch, "event": "doc.end",
			"data": map[string]any{"tenant": tenantOf(ch), "ch": ch}})
	}
	if st, reply := e.publish(map[string]any{"events": ends}); st != http.StatusOK {
		t.Fatalf("publish: %d %v", st, reply)
	}

	frames := 0
	for i, sb := range subs {
		got := map[string]int{}
		open := map[string]bool{}
		for _, ch := range sb.chans {
			open[ch] = true
		}
		for len(open) > 0 {
			ev := sb.s.next(10 * time.Second)
			frames++
			var d struct {
				Tenant, Ch string
				Seq        int
			}
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
				t.Fatalf("stream %d: %s %q", i, ev.Type, ev.Data)
			}
			if d.Tenant != sb.tenant || tenantOf(d.Ch) != sb.tenant {
				t.Fatalf("CROSS-TENANT: stream %d of %s@%s got an event of channel %s", i, sb.user, sb.tenant, d.Ch)
			}
			if !slices.Contains(sb.chans, d.Ch) {
				t.Fatalf("stream %d on %v got an event of channel %s", i, sb.chans, d.Ch)
			}
			switch ev.Type {
			case "doc.end":
				if !open[d.Ch] {
					t.Fatalf("stream %d: second end of %s", i, d.Ch)
				}
				if got[d.Ch] != seq[d.Ch] {
					t.Fatalf("stream %d: %d events of %s before its end, want %d", i, got[d.Ch], d.Ch, seq[d.Ch])
				}
				delete(open, d.Ch)
			case "doc.updated":
				if !open[d.Ch] {
					t.Fatalf("stream %d: event of %s after its end", i, d.Ch)
				}
				if d.Seq != got[d.Ch]+1 {
					t.Fatalf("stream %d: %s seq %d after %d (lost, repeated or reordered)", i, d.Ch, d.Seq, got[d.Ch])
				}
				got[d.Ch] = d.Seq
			default:
				t.Fatalf("stream %d: unexpected %s %s", i, ev.Type, ev.Data)
			}
		}
	}
	// Nothing more is pending on any stream.
	time.Sleep(50 * time.Millisecond)
	for i, sb := range subs {
		select {
		case ev := <-sb.s.events:
			t.Fatalf("stream %d: extra frame %s %s", i, ev.Type, ev.Data)
		default:
		}
	}
	t.Logf("%d streams, %d events published, %d frames checked", len(subs), events, frames)
}

// rsaKeyFile writes a fresh RSA public key as PEM and returns its path and
// the private key.
func rsaKeyFile(t *testing.T) (string, []byte, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	path := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pemBytes, k
}

func claims(user, tenant string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": user, "tenant_id": tenant, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func sign(t *testing.T, m jwt.SigningMethod, c jwt.Claims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSecurityForgedTokens presents forged and tampered credentials on the
// stream endpoint: every one is 401, and a token of one tenant never reads
// another tenant's channels (403).
func TestSecurityForgedTokens(t *testing.T) {
	chA := chanName("doc", tenantA, "f")
	chB := chanName("doc", tenantB, "f")
	qA := url.Values{"channel": {chA}}

	t.Run("hmac", func(t *testing.T) {
		e := newEnv(t, nil)
		good := token(t, "u1", tenantA, time.Hour, nil)
		parts := strings.Split(good, ".")
		// The payload swapped for one naming tenant B, the signature kept.
		swapped := strings.Replace(string(must(base64.RawURLEncoding.DecodeString(parts[1]))), tenantA, tenantB, 1)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(swapped)) + "." + parts[2]
		cases := []struct{ name, tok string }{
			{"alg none", sign(t, jwt.SigningMethodNone, claims("u1", tenantA), jwt.UnsafeAllowNoneSignatureType)},
			{"alg none, signature kept", strings.Replace(good, parts[0], base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)), 1)},
			{"wrong secret", sign(t, jwt.SigningMethodHS256, claims("u1", tenantA), []byte("another-secret-0123456789abcdef012345"))},
			{"HS512 with the wrong secret", sign(t, jwt.SigningMethodHS512, claims("u1", tenantA), []byte("x"))},
			{"tenant swapped in the payload", tampered},
			{"signature stripped", parts[0] + "." + parts[1] + "."},
			{"refresh token", token(t, "u1", tenantA, time.Hour, map[string]any{"token_type": "refresh"})},
			{"non-canonical tenant", token(t, "u1", strings.ToUpper(tenantA), time.Hour, nil)},
			{"no exp", token(t, "u1", tenantA, time.Hour, map[string]any{"exp": nil})},
			{"not yet valid", token(t, "u1", tenantA, time.Hour, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				refused(t, e.eventsURL(qA), bearer(tc.tok), 401, "")
			})
		}
		t.Run("query token, same forgeries", func(t *testing.T) {
			for _, tc := range cases {
				q := url.Values{"channel": {chA}, "access_token": {tc.tok}}
				if s, resp := tryOpen(t, e.eventsURL(q), nil); s != nil || resp.StatusCode != 401 {
					t.Fatalf("%s: a forged query token opened a stream", tc.name)
				}
			}
		})
		t.Run("token of A asks channels of B", func(t *testing.T) {
			refused(t, e.eventsURL(url.Values{"channel": {chB}}), bearer(good), 403, "foreign_tenant")
			refused(t, e.eventsURL(url.Values{"channel": {chA, chB}}), bearer(good), 403, "foreign_tenant")
			q := url.Values{"channel": {chB}, "ticket": {issueTicket(t, e, good)}}
			refused(t, e.eventsURL(q), nil, 403, "foreign_tenant")
		})
		// Control: the untampered token opens the stream.
		open(t, e.eventsURL(qA), bearer(good)).expect("stream-open")
	})

	t.Run("public key", func(t *testing.T) {
		path, pub, priv := rsaKeyFile(t)
		e := newEnv(t, func(c *server.Config) { c.JWTSecret = ""; c.JWTPublicKey = path })
		for name, tok := range map[string]string{
			// The classic confusion: the public key used as an HMAC secret.
			"HS256 signed with the public key": sign(t, jwt.SigningMethodHS256, claims("u1", tenantA), pub),
			"HS256 with the configured secret": token(t, "u1", tenantA, time.Hour, nil),
			"alg none":                         sign(t, jwt.SigningMethodNone, claims("u1", tenantA), jwt.UnsafeAllowNoneSignatureType),
			"RS256 of another key": func() string {
				other, _ := rsa.GenerateKey(rand.Reader, 2048)
				return sign(t, jwt.SigningMethodRS256, claims("u1", tenantA), other)
			}(),
		} {
			t.Run(name, func(t *testing.T) {
				refused(t, e.eventsURL(qA), bearer(tok), 401, "invalid_token")
			})
		}
		open(t, e.eventsURL(qA), bearer(sign(t, jwt.SigningMethodRS256, claims("u1", tenantA), priv))).expect("stream-open")
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestSecurityTicketReplay redeems a ticket twice: the second use is 401,
// whatever the channels asked for.
func TestSecurityTicketReplay(t *testing.T) {
	e := newEnv(t, nil)
	tok := token(t, "u1", tenantA, time.Hour, nil)
	q := url.Values{"channel": {chanName("doc", tenantA, "t")}}
	tk := issueTicket(t, e, tok)
	q.Set("ticket", tk)
	s := open(t, e.eventsURL(q), nil)
	s.expect("stream-open")
	refused(t, e.eventsURL(q), nil, 401, "invalid_token")
	// Redeemed by a refused request (foreign channel), it is still spent.
	tk2 := issueTicket(t, e, tok)
	refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "t")}, "ticket": {tk2}}), nil, 403, "foreign_tenant")
	refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantA, "t")}, "ticket": {tk2}}), nil, 401, "invalid_token")
	// A ticket is not a header credential.
	refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantA, "t")}}), bearer(issueTicket(t, e, tok)), 401, "invalid_token")
	// Forged tickets of the right shape.
	for range 20 {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		fake := base64.RawURLEncoding.EncodeToString(b)
		refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantA, "t")}, "ticket": {fake}}), nil, 401, "invalid_token")
	}
}

// TestSecurityTicketUsedLate redeems a ticket after its lifetime. The ticket
// TTL itself (30 s) is not configurable through server.Config, so this test
// uses a credential that expires in about two seconds: a ticket never
// outlives the credential it was issued for. The 30 s store lifetime is
// tested in auth (TestTicketExpiry).
func TestSecurityTicketUsedLate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	tok := token(t, "u1", tenantA, 0, map[string]any{"exp": exp.Unix()})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	st, reply := doJSON(t, req)
	if st != 200 || reply["expires_in"].(float64) > 3 {
		t.Fatalf("%d %v: the ticket must not outlive the credential", st, reply)
	}
	q := url.Values{"channel": {chanName("doc", tenantA, "late")}, "ticket": {reply["ticket"].(string)}}
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	if s, resp := tryOpen(t, e.eventsURL(q), nil); s != nil || resp.StatusCode != 401 {
		t.Fatal("a ticket used after its lifetime opened a stream")
	}
}

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

// postRevoke calls POST /revoke with the publisher key.
func postRevoke(t *testing.T, e *env, key string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/revoke", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	return doJSON(t, req)
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

// TestSecurityLimitsThroughHTTP checks every connection and size limit over
// real HTTP: each refusal is a problem+json body with its code.
func TestSecurityLimitsThroughHTTP(t *testing.T) {
	ch := chanName("doc", tenantA, "l")
	q := url.Values{"channel": {ch}}

	t.Run("streams per user", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.MaxStreamsPerUser = 2 })
		tok := token(t, "u1", tenantA, time.Hour, nil)
		s1 := open(t, e.eventsURL(q), bearer(tok))
		open(t, e.eventsURL(q), bearer(tok))
		refused(t, e.eventsURL(q), bearer(tok), 429, "too_many_streams")
		// The same user through a query token or ticket counts the same.
		refused(t, e.eventsURL(url.Values{"channel": {ch}, "access_token": {tok}}), nil, 429, "too_many_streams")
		open(t, e.eventsURL(q), bearer(token(t, "u2", tenantA, time.Hour, nil)))
		open(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "l")}}), bearer(token(t, "u1", tenantB, time.Hour, nil)))
		s1.close()
		eventually(t, 2*time.Second, "a closed stream frees its slot", func() bool {
			s, _ := tryOpen(t, e.eventsURL(q), bearer(tok))
			return s != nil
		})
	})
	t.Run("streams per tenant", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.MaxStreamsPerTenant = 3 })
		for i := range 3 {
			open(t, e.eventsURL(q), bearer(token(t, fmt.Sprint("u", i), tenantA, time.Hour, nil)))
		}
		refused(t, e.eventsURL(q), bearer(token(t, "u9", tenantA, time.Hour, nil)), 429, "too_many_streams")
		open(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "l")}}), bearer(token(t, "u9", tenantB, time.Hour, nil)))
	})
	t.Run("new streams per address", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.ConnRate = 0.5; c.ConnBurst = 2 })
		tok := token(t, "u1", tenantA, time.Hour, nil)
		for range 2 {
			open(t, e.eventsURL(q), bearer(tok)).close()
		}
		s, resp := tryOpen(t, e.eventsURL(q), bearer(tok))
		if s != nil || resp.StatusCode != 429 {
			t.Fatalf("third open within the burst: %v", resp.Status)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if n, err := strconv.Atoi(ra); err != nil || n < 1 || n > 2 {
				t.Fatalf("Retry-After %q, want 1 or 2 s at 0.5/s", ra)
			}
		}
		p := problemOf(t, resp)
		if p["code"] != "rate_limited" || !strings.Contains(p["detail"].(string), "retry in") {
			t.Fatalf("problem %v", p)
		}
	})
	t.Run("oversized headers", func(t *testing.T) {
		e := newEnv(t, nil) // 16 KiB
		h := bearer(token(t, "u1", tenantA, time.Hour, nil))
		h.Set("X-Pad", strings.Repeat("p", 16<<10))
		refused(t, e.eventsURL(q), h, 431, "headers_too_large")
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/publish", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+testPublishKey)
		req.Header.Set("X-Pad", strings.Repeat("p", 16<<10))
		resp := must(http.DefaultClient.Do(req))
		if resp.StatusCode != 431 || problemOf(t, resp)["code"] != "headers_too_large" {
			t.Fatalf("publish with oversized headers: %d", resp.StatusCode)
		}
	})
	t.Run("long URL", func(t *testing.T) {
		e := newEnv(t, nil) // 8 KiB
		long := url.Values{"channel": {ch}, "pad": {strings.Repeat("u", 8<<10)}}
		refused(t, e.eventsURL(long), bearer(token(t, "u1", tenantA, time.Hour, nil)), 414, "uri_too_long")
	})
	t.Run("oversized publish body", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.MaxBodyBytes = 4096; c.MaxEventBytes = 1024 })
		st, reply := e.publish(map[string]any{"channel": ch, "event": "doc.updated", "data": strings.Repeat("b", 5000)})
		if st != 413 || reply["code"] != "body_too_large" {
			t.Fatalf("%d %v", st, reply)
		}
		st, reply = e.publish(map[string]any{"channel": ch, "event": "doc.updated", "data": strings.Repeat("b", 1100)})
		if st != 413 || reply["code"] != "event_too_large" {
			t.Fatalf("%d %v", st, reply)
		}
	})
	t.Run("connection flood", func(t *testing.T) {
		e := newEnv(t, nil) // 50/s, burst 100
		tok := token(t, "u1", tenantA, time.Hour, nil)
		held := open(t, e.eventsURL(q), bearer(tok))
		held.expect("stream-open")

		const flood, workers = 500, 25
		// Each flooder is its own user, so only the address limit applies.
		toks := make([]string, flood+workers+1)
		for i := range toks {
			toks[i] = token(t, fmt.Sprint("flood-", i), tenantA, time.Hour, nil)
		}
		var ok200, ok429, other atomic.Int64
		var wg sync.WaitGroup
		next := atomic.Int64{}
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for i := next.Add(1); i <= flood; i = next.Add(1) {
					s, resp := tryOpen(t, e.eventsURL(q), bearer(toks[i]))
					switch {
					case s != nil:
						ok200.Add(1)
						s.close()
					case resp.StatusCode == 429:
						ok429.Add(1)
						resp.Body.Close()
					default:
						other.Add(1)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		allowed := int64(100 + 50*elapsed.Seconds() + 1)
		t.Logf("flood of %d opens in %v: %d admitted, %d refused", flood, elapsed, ok200.Load(), ok429.Load())
		if other.Load() != 0 || ok200.Load() > allowed || ok429.Load() < flood-allowed {
			t.Fatalf("%d admitted (allowed %d), %d refused, %d other", ok200.Load(), allowed, ok429.Load(), other.Load())
		}
		e.mustPublish(ch, "doc.updated", "after the flood")
		if ev := held.expect("doc.updated"); ev.Data != `"after the flood"` {
			t.Fatalf("held stream got %s", ev.Data)
		}
		eventually(t, 5*time.Second, "flood streams closed", func() bool { return e.gw.OpenStreams() == 1 })
	})
}

// TestSecurityNoGoroutineLeak opens and ends many streams in every way a
// stream ends — client close, client cancel mid-stream, token expiry, a slow
// consumer cut off, a revocation, refusals — and checks that the number of
// goroutines returns to its baseline.
func TestSecurityNoGoroutineLeak(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.QueueSize = 16
		c.WriteTimeout = 300 * time.Millisecond
		c.KeepAlive = 100 * time.Millisecond
	})
	ch := chanName("doc", tenantA, "leak")
	q := url.Values{"channel": {ch}}
	tok := token(t, "u1", tenantA, time.Hour, nil)

	settle := func() int {
		http.DefaultClient.CloseIdleConnections()
		n, stable := runtime.NumGoroutine(), 0
		for stable < 10 {
			time.Sleep(10 * time.Millisecond)
			m := runtime.NumGoroutine()
			if m == n {
				stable++
			} else {
				n, stable = m, 0
			}
		}
		return n
	}
	// Warm up: whatever starts lazily (broker janitor, transport) starts now.
	w := open(t, e.eventsURL(q), bearer(tok))
	w.expect("stream-open")
	e.mustPublish(ch, "doc.updated", 0)
	w.expect("doc.updated")
	w.close()
	eventually(t, 2*time.Second, "warm-up stream closed", func() bool { return e.gw.OpenStreams() == 0 })
	base := settle()

	var streams []*stream
	// Client closes after reading; client cancels while events flow.
	for i := range 40 {
		s := open(t, e.eventsURL(q), bearer(tok))
		s.expect("stream-open")
		streams = append(streams, s)
		if i%2 == 0 {
			s.close()
		}
	}
	for i := range 20 {
		e.mustPublish(ch, "doc.updated", i)
	}
	for _, s := range streams {
		s.cancel()
	}
	// Token expiry, and a revocation, on a quiet channel.
	quiet := chanName("doc", tenantA, "quiet")
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	var expiring []*stream
	for range 5 {
		s := open(t, e.eventsURL(url.Values{"channel": {quiet}, "access_token": {token(t, "u1", tenantA, 0, map[string]any{"exp": exp.Unix()})}}), nil)
		s.expect("stream-open")
		expiring = append(expiring, s)
	}
	revTok := token(t, "u2", tenantA, time.Hour, nil)
	rev := open(t, e.eventsURL(url.Values{"channel": {quiet}}), bearer(revTok))
	rev.expect("stream-open")
	// Refusals.
	for range 10 {
		refused(t, e.eventsURL(q), bearer("nope"), 401, "invalid_token")
		refused(t, e.eventsURL(url.Values{"channel": {chanName("doc", tenantB, "x")}}), bearer(tok), 403, "foreign_tenant")
	}
	// Slow consumers: raw connections that never read.
	var raws []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /events?%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", q.Encode(), tok)
		raws = append(raws, c)
	}
	eventually(t, 5*time.Second, "slow consumers open", func() bool { return e.gw.OpenStreams() >= 3+5+1 })
	// Batches of 100 overflow a queue of 16 at once, and 12 MiB is more
	// than the kernel's send buffer holds for a reader that never reads.
	big := strings.Repeat("x", 16<<10)
	for b := range 8 {
		var batch []map[string]any
		for i := range 100 {
			batch = append(batch, map[string]any{"channel": ch, "event": "doc.updated", "data": map[string]any{"i": b*100 + i, "pad": big}})
		}
		if st, reply := e.publish(map[string]any{"events": batch}); st != http.StatusOK {
			t.Fatalf("publish: %d %v", st, reply)
		}
	}
	if st, _ := postRevoke(t, e, testPublishKey, map[string]string{"tenant": tenantA, "user": "u2"}); st != 200 {
		t.Fatal("revoke")
	}
	if c := rev.streamError(2 * time.Second); c != "access-revoked" {
		t.Fatalf("revoked stream: %q", c)
	}
	for _, s := range expiring {
		if c := s.streamError(5 * time.Second); c != "token-expired" {
			t.Fatalf("expiring stream: %q", c)
		}
	}
	eventually(t, 10*time.Second, "every stream ended", func() bool { return e.gw.OpenStreams() == 0 })
	for _, c := range raws {
		c.Close()
	}
	for _, s := range append(append(streams, expiring...), rev) {
		s.close()
		<-s.done
	}

	deadline := time.Now().Add(10 * time.Second)
	n := settle()
	for n > base && time.Now().Before(deadline) {
		n = settle()
	}
	if n > base {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf)
	}
	t.Logf("goroutines back to %d (baseline %d)", n, base)
}

// syncBuffer collects concurrent output.
type syncBuffer = syncbuf.Buffer

// TestSecurityTokensNeverLogged runs the gateway with a JSON logger at debug
// level, sends credentials of every kind, good and bad, in headers and in
// query strings to every endpoint, and checks that no token, ticket or key
// appears in the log or in any response body.
func TestSecurityTokensNeverLogged(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, func(c *server.Config) { c.LogLevel = "debug" }, server.WithLogger(logger))
	ch := chanName("doc", tenantA, "log")
	good := token(t, "u1", tenantA, time.Hour, nil)
	otherSecret := sign(t, jwt.SigningMethodHS256, claims("u1", tenantA), []byte("another-secret-0123456789abcdef012345"))
	expired := token(t, "u1", tenantA, -time.Minute, nil)
	badPublisher := "wrong-publisher-key-abcdef0123456789"
	apiKey := "sk_live_0123456789abcdefghijklmnop"
	ticket := issueTicket(t, e, good)
	unused := issueTicket(t, e, good)
	fakeTicket := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQ"
	secrets := []string{good, otherSecret, expired, testPublishKey, badPublisher, apiKey, ticket, unused, fakeTicket, testSecret}
	for _, tok := range []string{good, otherSecret, expired} {
		parts := strings.Split(tok, ".")
		secrets = append(secrets, parts[1], parts[2]) // no fragment either
	}

	var bodies strings.Builder
	do := func(method, target string, h http.Header, body string) int {
		req, _ := http.NewRequest(method, e.srv.URL+target, strings.NewReader(body))
		for k, v := range h {
			req.Header[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // a stream ends at the timeout
		bodies.Write(b)
		for k, vs := range resp.Header {
			bodies.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
		}
		return resp.StatusCode
	}
	qs := func(kv ...string) string {
		v := url.Values{"channel": {ch}}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	hdr := func(v string) http.Header { return http.Header{"Authorization": {v}} }
	pub := `{"channel":"` + ch + `","event":"doc.updated","data":1}`
	cases := []struct {
		method, target string
		h              http.Header
		body           string
		status         int
	}{
		{"GET", "/events?" + qs("access_token", good), nil, "", 200},
		{"GET", "/events?" + qs("access_token", otherSecret), nil, "", 401},
		{"GET", "/events?" + qs("access_token", expired), nil, "", 401},
		{"GET", "/events?" + qs("access_token", good, "ticket", unused), nil, "", 401},
		{"GET", "/events?" + qs("ticket", ticket), nil, "", 200},
		{"GET", "/events?" + qs("ticket", ticket), nil, "", 401},
		{"GET", "/events?" + qs("ticket", fakeTicket), nil, "", 401},
		{"GET", "/events?" + qs("access_token", apiKey), nil, "", 401},
		{"GET", "/events?" + qs(), hdr("Bearer " + good), "", 200},
		{"GET", "/events?" + qs(), hdr("Bearer " + otherSecret), "", 401},
		{"GET", "/events?" + qs(), hdr("Bearer " + expired), "", 401},
		{"GET", "/events?" + qs(), hdr("Api-Key " + apiKey), "", 401},
		{"GET", "/events?" + qs(), hdr(good), "", 401},
		{"GET", "/events?" + qs("access_token", good), hdr("Bearer " + otherSecret), "", 401},
		{"GET", "/events?channel=" + chanName("doc", tenantB, "x") + "&access_token=" + good, nil, "", 403},
		{"GET", "/events?channel=bad&access_token=" + good, nil, "", 400},
		{"GET", "/events?" + qs("ACCESS_TOKEN", good), nil, "", 401},
		{"POST", "/tickets", hdr("Bearer " + good), "", 200},
		{"POST", "/tickets", hdr("Bearer " + otherSecret), "", 401},
		{"POST", "/tickets?access_token=" + good, nil, "", 401},
		{"POST", "/tickets?ticket=" + unused, nil, "", 401},
		{"POST", "/publish", hdr("Bearer " + testPublishKey), pub, 200},
		{"POST", "/publish?access_token=" + good, hdr("Bearer " + badPublisher), pub, 401},
		{"POST", "/publish", hdr("Bearer " + good), pub, 401},
		{"POST", "/publish", hdr(testPublishKey), pub, 401},
		{"POST", "/revoke", hdr("Bearer " + badPublisher), `{"tenant":"` + tenantB + `"}`, 401},
		{"GET", "/nowhere?access_token=" + good + "&ticket=" + unused, nil, "", 404},
		{"GET", "/healthz?access_token=" + good, nil, "", 200},
		{"DELETE", "/events?access_token=" + good, nil, "", 405},
	}
	for i, tc := range cases {
		if st := do(tc.method, tc.target, tc.h, tc.body); st != tc.status {
			t.Fatalf("case %d %s %s: status %d, want %d", i, tc.method, redactURL(e.srv.URL+tc.target), st, tc.status)
		}
	}
	eventually(t, 2*time.Second, "streams closed", func() bool { return e.gw.OpenStreams() == 0 })
	log := logs.String()
	if !strings.Contains(log, `"stream open"`) || !strings.Contains(log, auth.Redacted) {
		t.Fatalf("the debug log lacks stream or request lines:\n%s", log)
	}
	for i, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("secret %d (%.8s…) in the log", i, s)
		}
		if strings.Contains(bodies.String(), s) {
			t.Errorf("secret %d (%.8s…) in a response", i, s)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
}

// TestSecuritySlowLoris trickles request headers one line at a time, slower
// than any real client: the server built by sluice.NewHTTPServer drops the
// connection once its ReadHeaderTimeout (10 s) has passed, however steadily
// the bytes come. It takes those 10 s, so it runs in parallel and not with
// -short.
func TestSecuritySlowLoris(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s ReadHeaderTimeout")
	}
	t.Parallel()
	cfg := server.DefaultConfig()
	cfg.JWTSecret = testSecret
	cfg.LogLevel = "error"
	gw, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv := sluice.NewHTTPServer(gw.Handler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 30*time.Second {
		t.Fatalf("ReadHeaderTimeout %v", srv.ReadHeaderTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET /events?channel="+chanName("doc", tenantA, "sl")+" HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(c, "X-Slow-%d: %d\r\n", i, i); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(srv.ReadHeaderTimeout + 5*time.Second))
	b, err := io.ReadAll(c)
	d := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
	if d < srv.ReadHeaderTimeout-time.Second || d > srv.ReadHeaderTimeout+3*time.Second {
		t.Fatalf("dropped after %v, ReadHeaderTimeout %v", d, srv.ReadHeaderTimeout)
	}
	if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 4") {
		t.Fatalf("answer to an unfinished request: %q", b)
	}
	t.Logf("dropped after %v (%d bytes answered)", d.Round(time.Millisecond), len(b))
}

// TestSecurityCursorForgery resumes with cursors a client was not given: an
// altered one, one of another deployment, and one naming another tenant's
// channel. None is a position: the stream resets or starts at the head, and
// nothing of the history is replayed.
func TestSecurityCursorForgery(t *testing.T) {
	e := newEnv(t, nil)
	chA := chanName("doc", tenantA, "cur")
	chB := chanName("doc", tenantB, "cur")
	tokA := token(t, "u1", tenantA, time.Hour, nil)
	tokB := token(t, "u1", tenantB, time.Hour, nil)
	s := open(t, e.eventsURL(url.Values{"channel": {chA}}), bearer(tokA))
	first := s.expect("stream-open").LastEventID
	e.mustPublish(chA, "doc.updated", "secret of A")
	s.expect("doc.updated")

	resume := func(ch, tok, cursor string) *stream {
		h := bearer(tok)
		h.Set("Last-Event-ID", cursor)
		s := open(t, e.eventsURL(url.Values{"channel": {ch}}), h)
		s.expect("stream-open")
		return s
	}
	flip := []byte(first)
	if i := len(flip) / 2; flip[i] != 'A' {
		flip[i] = 'A'
	} else {
		flip[i] = 'B'
	}
	other := newEnv(t, nil)
	foreign := open(t, other.eventsURL(url.Values{"channel": {chA}}), bearer(tokA)).expect("stream-open").LastEventID
	for name, cur := range map[string]string{"altered": string(flip), "another deployment": foreign} {
		t.Run(name, func(t *testing.T) {
			r := resume(chA, tokA, cur)
			if ev := r.next(5 * time.Second); ev.Type != "stream-reset" {
				t.Fatalf("got %s %s, want stream-reset", ev.Type, ev.Data)
			}
			e.mustPublish(chA, "doc.updated", "live")
			if ev := r.expect("doc.updated"); ev.Data != `"live"` {
				t.Fatalf("replayed %s from a forged cursor", ev.Data)
			}
		})
	}
	t.Run("cursor of another tenant's channel", func(t *testing.T) {
		// Tenant B's user presents tenant A's cursor on its own channel:
		// the cursor names no channel of the request, so the stream starts
		// at the head, and A's channel is never read.
		r := resume(chB, tokB, first)
		e.mustPublish(chA, "doc.updated", "A again")
		e.mustPublish(chB, "doc.updated", "B live")
		if ev := r.next(5 * time.Second); ev.Type != "doc.updated" || ev.Data != `"B live"` {
			t.Fatalf("got %s %s", ev.Type, ev.Data)
		}
	})
}
