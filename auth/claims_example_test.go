package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
)

// A channels hook checks the caller's role from a claim of its JWT.
func ExamplePrincipal_ClaimStrings() {
	secret := []byte("an HMAC secret of at least 32 bytes!")
	jwts, err := jwtauth.New(context.Background(), jwtauth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}
	a, err := auth.New(context.Background(), auth.Config{Tokens: jwts})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":       "alice",
		"tenant_id": "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
		"exp":       time.Now().Add(time.Hour).Unix(),
		"roles":     []string{"scan.read", "scan.write"},
		"plan":      "team",
	}).SignedString(secret)
	r := httptest.NewRequest(http.MethodGet, "/events", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	p, err := a.Authenticate(r, auth.Options{})
	if err != nil {
		panic(err)
	}

	fmt.Println(slices.Contains(p.ClaimStrings("roles"), "scan.read"))
	plan, _ := p.ClaimString("plan")
	fmt.Println(plan)
	_, ok := p.Claim("department")
	fmt.Println(ok)
	// Output:
	// true
	// team
	// false
}
