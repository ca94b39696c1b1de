package jwtauth_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
)

// BenchmarkAuthenticateJWT measures one HS256 bearer token authenticated,
// signature and claims included.
func BenchmarkAuthenticateJWT(b *testing.B) {
	now := epoch
	a := newAuth(b, config{JWTSecret: secret, Now: func() time.Time { return now }})
	r := request("", "Bearer "+hs256(b, claims(now, set("typ", "access"), set("aud", []string{"a", "b"}))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(r, auth.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
