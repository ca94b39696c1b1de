package sluice_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
)

// A service adds its own stream endpoint: it supplies only the channels hook
// (here a lookup of the scan within the caller's tenant); Sluice does
// authentication, the tenant gate, streaming and resume.
func ExampleGateway_Stream() {
	ctx := context.Background()
	secret := []byte("example-secret-0123456789abcdef0123")
	verifier, err := jwtauth.New(ctx, jwtauth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}
	gw, err := sluice.New(ctx, sluice.Options{Auth: auth.Config{Tokens: verifier}})
	if err != nil {
		panic(err)
	}
	defer gw.Close()

	const tenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
	scans := map[string]string{"42": tenant} // scan id → owning tenant

	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/scans/{id}/events", gw.Stream(
		func(r *http.Request, p auth.Principal) ([]channel.Name, error) {
			id := r.PathValue("id")
			if scans[id] != p.Tenant {
				return nil, problem.New(http.StatusNotFound, problem.CodeNotFound, "no such scan")
			}
			return []channel.Name{channel.MustMake("scan-progress", p.Tenant, id)}, nil
		}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// A user of the tenant subscribes…
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/scans/42/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() string { // the next line that is not an id
		for lines.Scan() {
			if !strings.HasPrefix(lines.Text(), "id: ") {
				return lines.Text()
			}
		}
		return ""
	}
	for range 4 { // retry, event, data, blank line of stream-open
		fmt.Println(next())
	}

	// …and the backend publishes in-process.
	ch := channel.MustMake("scan-progress", tenant, "42")
	if _, err := gw.Publish(ctx, sluice.Event{Channel: ch.String(), Type: "scan.progress", Data: map[string]int{"pct": 40}}); err != nil {
		panic(err)
	}
	fmt.Println(next())
	fmt.Println(next())
	// Output:
	// retry: 2000
	// event: stream-open
	// data: {"channels":["scan-progress:3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91:42"]}
	//
	// event: scan.progress
	// data: {"pct":40}
}
