package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/publisher"
)

// exampleGateway starts a gateway to publish to; in production the base URL
// is the Sluice service's.
func exampleGateway() (url string, stop func()) {
	verifier, err := jwtauth.New(context.Background(), jwtauth.Config{Secret: []byte("example-secret-0123456789abcdef0123")})
	if err != nil {
		panic(err)
	}
	gw, err := sluice.New(context.Background(), sluice.Options{
		Auth:        auth.Config{Tokens: verifier},
		PublishKeys: []string{"example-publisher-key"},
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(gw.Handler())
	return srv.URL, func() { srv.Close(); _ = gw.Close() }
}

func Example() {
	base, stop := exampleGateway()
	defer stop()

	pub := publisher.New(base, "example-publisher-key")
	ch := "scan-progress:3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91:42"
	id, err := pub.Publish(context.Background(), ch, "scan.progress", map[string]int{"percent": 40})
	fmt.Println(id != "", err)
	// Output: true <nil>
}

func ExampleClient_PublishBatch() {
	base, stop := exampleGateway()
	defer stop()

	pub := publisher.New(base, "example-publisher-key")
	ch := "scan-progress:3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91:42"
	ids, err := pub.PublishBatch(context.Background(), []publisher.Event{
		{Channel: ch, Type: "scan.progress", Data: map[string]int{"percent": 100}},
		{Channel: ch, Type: "scan.completed", Data: map[string]string{"result": "clean"}},
	})
	fmt.Println(len(ids), err)
	// Output: 2 <nil>
}

func ExampleClient_NewBatcher() {
	base, stop := exampleGateway()
	defer stop()

	b := publisher.New(base, "example-publisher-key").NewBatcher(publisher.BatchOptions{MaxEvents: 100})
	ctx := context.Background()
	ch := "scan-progress:3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91:42"
	for pct := 0; pct <= 100; pct += 10 {
		if err := b.Add(ctx, ch, "scan.progress", map[string]int{"percent": pct}); err != nil {
			fmt.Println(err)
		}
	}
	// Close sends what is queued and reports failed requests.
	fmt.Println(b.Close(ctx))
	// Output: <nil>
}

func ExampleError() {
	base, stop := exampleGateway()
	defer stop()

	pub := publisher.New(base, "example-publisher-key")
	_, err := pub.Publish(context.Background(), "scan-progress:not-a-tenant:42", "scan.progress", 1)
	var pe *publisher.Error
	if errors.As(err, &pe) {
		fmt.Println(pe.Status, pe.Code)
	}
	// Output: 400 malformed_channel
}
