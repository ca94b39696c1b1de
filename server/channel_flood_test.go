package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// Naming channels costs nothing once the streams are gone: a user who opens
// (and closes) streams on thousands of fresh channel names of their own
// tenant leaves no broker state behind — no memory on the memory broker, no
// key in Redis.
func TestChannelNameFloodLeavesNoState(t *testing.T) {
	round := 0
	flood := func(t *testing.T, e *env, names int) {
		round++
		tok := token(t, "flooder", tenantA, time.Hour, nil)
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr}
		for i := range names {
			q := url.Values{"channel": {chanName("doc", tenantA, fmt.Sprintf("fresh-%d-%d", round, i))}}
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.eventsURL(q), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := hc.Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			buf := make([]byte, 256)
			_, _ = resp.Body.Read(buf) // the opening block
			cancel()
			resp.Body.Close()
		}
		testutil.Eventually(t, 10*time.Second, "every flood stream closed", func() bool { return e.gw.OpenStreams() == 0 })
	}

	t.Run("memory", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.ConnRate = 1e6; c.ConnBurst = 1e6 })
		const names = 10000
		flood(t, e, names) // warm-up: whatever grows once has grown
		before := heapInUse()
		flood(t, e, names)
		if grew := heapInUse() - before; grew > 1<<20 {
			t.Fatalf("%d fresh channel names retained %d KiB (%d B each)", names, grew>>10, grew/names)
		}
	})
	t.Run("redis", func(t *testing.T) {
		if os.Getenv("SLUICE_TEST_REDIS_URL") == "" {
			t.Skip("set SLUICE_TEST_REDIS_URL to run against a real Redis")
		}
		prefix := "sluicetest:" + redistest.Random() + ":"
		u := redistest.URL(t, "the Redis variant")
		rc := redistest.Client(t, u)
		t.Cleanup(func() { redistest.DeleteKeys(t, rc, prefix) })
		e := newEnv(t, func(c *server.Config) {
			c.Broker, c.RedisURL, c.RedisPrefix = "redis", u, prefix
			c.ConnRate, c.ConnBurst = 1e6, 1e6
		})
		const names = 3000
		flood(t, e, names)
		keys, err := rc.Do(t.Context(), rc.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) > 1 { // the cursor key
			t.Fatalf("%d fresh channel names left %d keys, e.g. %v", names, len(keys), keys[:min(3, len(keys))])
		}
	})
}

// heapInUse returns the live heap after two collections.
func heapInUse() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
