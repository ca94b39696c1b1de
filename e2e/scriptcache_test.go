package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker/redis"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// TestRedisBatchOrderAcrossScriptFlush checks that a batch of one channel
// longer than one publish script run keeps its order when Redis loses its
// script cache in the middle of it while another publisher loads the script
// again: SCRIPT FLUSH, many times a second, on a redis-server of the test's
// own (the script cache is the whole server's, so the shared test Redis is
// left alone). It runs with the other Redis tests, when
// SLUICE_TEST_REDIS_URL is set.
func TestRedisBatchOrderAcrossScriptFlush(t *testing.T) {
	redisURL(t) // the test runs with the other Redis tests
	port := startRedisServer(t).Port
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := redis.New(ctx, redis.Config{URL: url, Prefix: "flush:"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctl := redisClient(t, url)

	mk := func(res string) channel.Name {
		ch, err := channel.Make("flush", tenant, res)
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	ordered, other := mk("ordered"), mk("other")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var flushes atomic.Int64
	wg.Go(func() { // loses the cache
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
			if ctl.Do(ctx, ctl.B().ScriptFlush().Build()).Error() == nil {
				flushes.Add(1)
			}
		}
	})
	wg.Go(func() { // loads it again: a single run answered NOSCRIPT is re-sent as EVAL
		one := []event.Message{{Channel: other, Type: "flush.tick", Data: []byte(`{}`)}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := b.Publish(ctx, one); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var once sync.Once
	halt := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer halt()

	batch := make([]event.Message, 3*128+1) // four script runs
	for i := range batch {
		batch[i] = event.Message{Channel: ordered, Type: "flush.tick", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
	}
	for n := 0; n < 300; n++ {
		pos, err := b.Publish(ctx, batch)
		if err != nil {
			t.Fatalf("batch %d: %v", n, err)
		}
		for i := 1; i < len(pos); i++ {
			if pos[i].Epoch != pos[i-1].Epoch || pos[i].Offset != pos[i-1].Offset+1 {
				t.Fatalf("batch %d: event %d got %v, event %d %v: the batch's order was not kept",
					n, i-1, pos[i-1], i, pos[i])
			}
		}
	}
	halt()

	// The test tested something only if the cache was lost under it.
	info, err := ctl.Do(ctx, ctl.B().Info().Section("errorstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	if flushes.Load() == 0 || !strings.Contains(info, "errorstat_NOSCRIPT:count=") {
		t.Fatalf("%d SCRIPT FLUSHes and no NOSCRIPT answered (errorstats: %q): nothing was tested",
			flushes.Load(), info)
	}
	t.Logf("%d SCRIPT FLUSHes; %s", flushes.Load(), strings.TrimSpace(info))
}
