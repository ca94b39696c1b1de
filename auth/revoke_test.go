package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/problem"
)

// fixedRevs is a Revocations with fixed times, by tenant and user ("" for
// the whole tenant).
type fixedRevs map[[2]string]time.Time

func (f fixedRevs) RevokedAt(_ context.Context, tenant, user string) (time.Time, bool, error) {
	var latest time.Time
	ok := false
	for _, k := range [][2]string{{tenant, user}, {tenant, ""}} {
		if at, found := f[k]; found && (!ok || at.After(latest)) {
			latest, ok = at, true
		}
	}
	return latest, ok, nil
}

func TestRevokedJWT(t *testing.T) {
	now := epoch
	iat := now.Add(-time.Minute) // whole second
	tests := []struct {
		name   string
		revs   fixedRevs
		claims jwt.MapClaims
		want   string
	}{
		{"no revocation", fixedRevs{}, claims(now), ""},
		{"issued before", fixedRevs{{tenantA, "u1"}: iat.Add(time.Second)}, claims(now), problem.CodeCredentialRevoked},
		{"iat equal to revocation second", fixedRevs{{tenantA, "u1"}: iat}, claims(now), problem.CodeCredentialRevoked},
		{"iat in the revocation second", fixedRevs{{tenantA, "u1"}: iat.Add(500 * time.Millisecond)}, claims(now), problem.CodeCredentialRevoked},
		{"issued the second after", fixedRevs{{tenantA, "u1"}: iat.Add(-time.Second)}, claims(now), ""},
		{"issued after a fractional revocation", fixedRevs{{tenantA, "u1"}: iat.Add(-500 * time.Millisecond)}, claims(now), ""},
		{"fractional iat in the revocation second", fixedRevs{{tenantA, "u1"}: iat.Add(100 * time.Millisecond)},
			claims(now, set("iat", float64(iat.Unix())+0.9)), problem.CodeCredentialRevoked},
		{"no iat", fixedRevs{{tenantA, "u1"}: iat.Add(-time.Hour)}, claims(now, del("iat")), problem.CodeCredentialRevoked},
		{"no iat, no revocation", fixedRevs{}, claims(now, del("iat")), ""},
		{"whole tenant", fixedRevs{{tenantA, ""}: iat}, claims(now), problem.CodeCredentialRevoked},
		{"other user", fixedRevs{{tenantA, "u2"}: now}, claims(now), ""},
		{"other tenant", fixedRevs{{tenantB, "u1"}: now, {tenantB, ""}: now}, claims(now), ""},
		{"latest of user and tenant", fixedRevs{{tenantA, "u1"}: iat.Add(-time.Hour), {tenantA, ""}: iat}, claims(now), problem.CodeCredentialRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuth(t, config{JWTSecret: secret, Revocations: tt.revs, Now: func() time.Time { return now }})
			_, err := a.Authenticate(request("", "Bearer "+hs256(t, tt.claims)), auth.Options{})
			if got := code(t, err); got != tt.want {
				t.Fatalf("code %q, want %q (%v)", got, tt.want, err)
			}
		})
	}
}

func TestRevokedAPIKeyAndTicket(t *testing.T) {
	c := newClock()
	revs := &auth.MemoryRevocations{TTL: 24 * time.Hour, Now: c.Now}
	a := newAuth(t, config{JWTSecret: secret, APIKeysFile: apiKeysFile(t), Revocations: revs,
		Tickets: &auth.MemoryTickets{Now: c.Now}, Now: c.Now})
	ctx := context.Background()
	keyReq := func() error {
		_, err := a.Authenticate(request("", "Api-Key "+apiKey1), auth.Options{})
		return err
	}
	jwtP, err := a.Authenticate(request("", "Bearer "+hs256(t, claims(c.Now()))), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ticket, _, err := a.IssueTicket(ctx, jwtP)
	if err != nil {
		t.Fatal(err)
	}

	c.Advance(time.Second)
	revs.Revoke(tenantA, "u1")
	if code(t, keyReq()) != problem.CodeCredentialRevoked {
		t.Fatal("API key accepted while revoked")
	}
	if _, err := redeem(a, ticket); code(t, err) != problem.CodeCredentialRevoked {
		t.Fatalf("ticket issued before the revocation: %v", err)
	}
	if code(t, a.StillValid(ctx, jwtP)) != problem.CodeCredentialRevoked {
		t.Fatal("StillValid ignores the revocation")
	}
	// Another tenant's key is untouched.
	if _, err := a.Authenticate(request("", "Api-Key "+apiKey2), auth.Options{}); err != nil {
		t.Fatal(err)
	}

	// A JWT issued after the revocation, and its ticket, are accepted.
	c.Advance(time.Second)
	fresh, err := a.Authenticate(request("", "Bearer "+hs256(t, claims(c.Now(), set("iat", c.Now().Unix())))), auth.Options{})
	if err != nil {
		t.Fatalf("fresh JWT: %v", err)
	}
	ticket, _, err = a.IssueTicket(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redeem(a, ticket); err != nil {
		t.Fatalf("ticket issued after the revocation: %v", err)
	}
	if err := a.StillValid(ctx, fresh); err != nil {
		t.Fatalf("StillValid: %v", err)
	}

	// Once the revocation expires, the API key works again.
	c.Advance(24 * time.Hour)
	if err := keyReq(); err != nil {
		t.Fatalf("API key after the revocation ended: %v", err)
	}
}

func TestStillValid(t *testing.T) {
	c := newClock()
	a := newAuth(t, config{JWTSecret: secret, Leeway: 5 * time.Second, Now: c.Now})
	p, err := a.Authenticate(request("", "Bearer "+hs256(t, claims(c.Now(), set("exp", c.Now().Add(time.Minute).Unix())))), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.StillValid(ctx, p); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute + 4*time.Second)
	if err := a.StillValid(ctx, p); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	c.Advance(time.Second)
	if code(t, a.StillValid(ctx, p)) != problem.CodeTokenExpired {
		t.Fatal("expired principal still valid")
	}
	if a.Leeway() != 5*time.Second {
		t.Fatal("Leeway")
	}
}

func TestRevocationFault(t *testing.T) {
	a := newAuth(t, config{JWTSecret: secret, APIKeysFile: apiKeysFile(t), Revocations: failing{},
		Now: func() time.Time { return epoch }})
	for _, h := range []string{"Bearer " + hs256(t, claims(epoch)), "Api-Key " + apiKey1} {
		p, err := a.Authenticate(request("", h), auth.Options{})
		if !errors.Is(err, errDown) || isProblem(err) || p != (auth.Principal{}) {
			t.Fatalf("%s: %v %v, want a fault and no principal", h[:7], p, err)
		}
	}
	p := auth.Principal{User: "u1", Tenant: tenantA, Kind: auth.KindAPIKey}
	if err := a.StillValid(context.Background(), p); !errors.Is(err, errDown) || isProblem(err) {
		t.Fatalf("StillValid: %v, want a fault", err)
	}
}

func TestRevoked(t *testing.T) {
	at := epoch
	tests := []struct {
		p    auth.Principal
		want bool
	}{
		{auth.Principal{Kind: auth.KindJWT, IssuedAt: at}, true},
		{auth.Principal{Kind: auth.KindJWT, IssuedAt: at.Add(999 * time.Millisecond)}, true},
		{auth.Principal{Kind: auth.KindJWT, IssuedAt: at.Add(time.Second)}, false},
		{auth.Principal{Kind: auth.KindJWT}, true},
		{auth.Principal{Kind: auth.KindTicket, IssuedAt: at}, true},
		{auth.Principal{Kind: auth.KindTicket, IssuedAt: at.Add(time.Millisecond)}, false},
		{auth.Principal{Kind: auth.KindAPIKey}, true},
		{auth.Principal{Kind: "other", IssuedAt: at.Add(time.Hour)}, true},
	}
	for _, tt := range tests {
		if got := auth.Revoked(tt.p, at); got != tt.want {
			t.Errorf("Revoked(%s issued %v) = %v, want %v", tt.p.Kind, tt.p.IssuedAt.Sub(at), got, tt.want)
		}
	}
}

func TestMemoryRevocations(t *testing.T) {
	c := newClock()
	r := &auth.MemoryRevocations{TTL: time.Hour, Now: c.Now}
	ctx := context.Background()
	if _, ok, _ := r.RevokedAt(ctx, tenantA, "u1"); ok {
		t.Fatal("revoked before any revocation")
	}
	r.Revoke(tenantA, "u1")
	c.Advance(time.Minute)
	t2 := r.Revoke(tenantA, "")
	if at, ok, _ := r.RevokedAt(ctx, tenantA, "u1"); !ok || !at.Equal(t2) {
		t.Fatalf("latest: %v %v, want %v", at, ok, t2)
	}
	if at, ok, _ := r.RevokedAt(ctx, tenantA, "u2"); !ok || !at.Equal(t2) {
		t.Fatalf("tenant-wide: %v %v", at, ok)
	}
	if _, ok, _ := r.RevokedAt(ctx, tenantB, "u1"); ok {
		t.Fatal("other tenant revoked")
	}
	c.Advance(time.Hour - time.Minute)
	if _, ok, _ := r.RevokedAt(ctx, tenantA, "u1"); !ok {
		t.Fatal("tenant revocation ended early")
	}
	c.Advance(time.Minute)
	if _, ok, _ := r.RevokedAt(ctx, tenantA, "u1"); ok {
		t.Fatal("revocation outlived its TTL")
	}
}
