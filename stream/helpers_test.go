package stream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/memory"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

const benchTenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"

type allowAll struct{}

func (allowAll) Authenticate(*http.Request, auth.Options) (auth.Principal, error) {
	return auth.Principal{User: "bench", Tenant: benchTenant, Kind: auth.KindAPIKey}, nil
}
func (allowAll) StillValid(context.Context, auth.Principal) error { return nil }
func (allowAll) Check(context.Context, auth.Principal, []channel.Name) error {
	return nil
}

type benchEnv struct {
	s    *Server
	b    *memory.Broker
	srv  *httptest.Server
	once sync.Once
}

// close drains and stops the server, once; it also runs at cleanup.
func (e *benchEnv) close() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.s.Drain(ctx)
		e.srv.Close()
		e.s.Close()
		_ = e.b.Close()
	})
}

func newBenchEnv(tb testing.TB, mutate ...func(*Config)) *benchEnv {
	b := memory.New(broker.Options{})
	key, _ := b.CursorKey(context.Background())
	cfg := Config{Broker: b, Auth: allowAll{}, Gate: allowAll{}, Codec: event.NewCodec(key), QueueSize: 4096}
	for _, f := range mutate {
		f(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e := &benchEnv{s: s, b: b, srv: httptest.NewServer(s.Handler(QueryChannels))}
	tb.Cleanup(e.close)
	return e
}
