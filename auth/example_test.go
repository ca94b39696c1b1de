package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/problem"
)

func ExampleAuthenticator_Authenticate() {
	secret := []byte("an HMAC secret of at least 32 bytes!")
	jwts, err := jwtauth.New(context.Background(), jwtauth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}
	a, err := auth.New(context.Background(), auth.Config{Tokens: jwts})
	if err != nil {
		panic(err)
	}
	defer a.Close() // closes jwts too

	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":       "alice",
		"tenant_id": "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
		"exp":       time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)

	// The stream endpoint also accepts ?access_token= (Options.Query).
	r := httptest.NewRequest(http.MethodGet, "/events?access_token="+token, nil)
	p, err := a.Authenticate(r, auth.Options{Query: true})
	fmt.Println(p, err)

	// Elsewhere only the Authorization header counts.
	_, err = a.Authenticate(r, auth.Options{})
	if prob, ok := problem.As(err); ok {
		fmt.Println(prob.Status, prob.Code)
	}
	// Output:
	// jwt:alice@3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f <nil>
	// 401 missing_credentials
}

func ExampleAuthenticator_IssueTicket() {
	jwts, err := jwtauth.New(context.Background(), jwtauth.Config{Secret: []byte("an HMAC secret of at least 32 bytes!")})
	if err != nil {
		panic(err)
	}
	a, err := auth.New(context.Background(), auth.Config{
		Tokens:  jwts,
		Tickets: &auth.MemoryTickets{},
	})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	// p is the principal of a POST /tickets request authenticated by its
	// headers.
	p := auth.Principal{User: "alice", Tenant: "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
		Kind: auth.KindJWT, Expiry: time.Now().Add(time.Hour)}
	ticket, ttl, err := a.IssueTicket(context.Background(), p)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(ticket), ttl)

	r := httptest.NewRequest(http.MethodGet, "/events?ticket="+ticket, nil)
	got, err := a.Authenticate(r, auth.Options{Query: true})
	fmt.Println(got, err)
	_, err = a.Authenticate(r, auth.Options{Query: true})
	fmt.Println(err)
	// Output:
	// 43 30s
	// ticket:alice@3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f <nil>
	// 401 invalid_token: ticket unknown, expired or already used
}

func ExampleHashAPIKey() {
	// The API key file stores only this hash of each key.
	fmt.Println(auth.HashAPIKey("sk_live_example"))
	// Output: sha256:edc0244907453860f53b31a05089a2a9f0fdb349e3610b2ab88a36fd9719d7fa
}

func ExampleRedactQuery() {
	fmt.Println(auth.RedactQuery("channel=scan:3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f:42&access_token=eyJhbGciOi.x.y"))
	// Output: channel=scan:3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f:42&access_token=REDACTED
}

func ExampleRedactHeader() {
	h := http.Header{"Authorization": {"Bearer eyJhbGciOi.x.y"}, "Accept": {"text/event-stream"}}
	fmt.Println(auth.RedactHeader(h))
	// Output: map[Accept:[text/event-stream] Authorization:[Bearer REDACTED]]
}
