package routes

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/problem"
)

func TestCacheBounded(t *testing.T) {
	c := newCache(3)
	for i := range 10 {
		_, _ = c.do(context.Background(), strconv.Itoa(i), func() (outcome, time.Duration) { return nil, time.Minute })
	}
	if n := c.len(); n != 3 {
		t.Fatalf("cache holds %d answers, want 3", n)
	}
	// The most recent answers stay.
	calls := 0
	_, _ = c.do(context.Background(), "9", func() (outcome, time.Duration) { calls++; return nil, time.Minute })
	_, _ = c.do(context.Background(), "0", func() (outcome, time.Duration) { calls++; return nil, time.Minute })
	if calls != 1 {
		t.Fatalf("fetched %d times, want 1 (only the evicted key)", calls)
	}
}

func TestCacheSharesOneFetch(t *testing.T) {
	c := newCache(10)
	var fetches atomic.Int32
	release := make(chan struct{})
	refused := problem.New(http.StatusForbidden, problem.CodeForbidden, "no")
	var wg sync.WaitGroup
	results := make([]outcome, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = c.do(context.Background(), "k", func() (outcome, time.Duration) {
				fetches.Add(1)
				<-release
				return refused, 0
			})
		}()
	}
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != refused {
			t.Fatalf("caller %d got %v", i, r)
		}
	}
	if n := fetches.Load(); n > int32(len(results)) || c.len() != 0 {
		t.Fatalf("fetches %d, cached %d (a zero duration caches nothing)", n, c.len())
	}
}

func TestCacheWaiterLeaves(t *testing.T) {
	c := newCache(10)
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = c.do(context.Background(), "k", func() (outcome, time.Duration) { close(started); <-release; return nil, 0 })
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.do(ctx, "k", func() (outcome, time.Duration) { t.Error("second fetch"); return nil, 0 }); err == nil {
		t.Fatal("a waiter whose context ended got no error")
	}
	close(release)
}
