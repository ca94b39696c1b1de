package answercache

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New[bool](100)
	c.now = func() time.Time { return now }
	c.Put("a", true, time.Second)
	c.Put("b", false, 2*time.Second)
	if m, ok := c.Get("a"); !ok || !m {
		t.Fatal("positive answer lost")
	}
	if m, ok := c.Get("b"); !ok || m {
		t.Fatal("negative answer lost")
	}
	now = now.Add(time.Second)
	if _, ok := c.Get("a"); ok {
		t.Fatal("answer outlived its TTL")
	}
	if _, ok := c.Get("b"); !ok {
		t.Fatal("answer dropped before its own TTL")
	}
	for i := range 1000 {
		c.Put(strconv.Itoa(i), true, time.Second)
		if n := c.Len(); n > 100 {
			t.Fatalf("cache holds %d entries, bound 100", n)
		}
	}
	if _, ok := c.Get("999"); !ok {
		t.Fatal("latest entry evicted")
	}

	c.Put("off", true, 0)
	c.Put("neg", true, -1)
	if _, ok := c.Get("off"); ok {
		t.Fatal("a zero TTL kept an answer")
	}
	if _, ok := c.Get("neg"); ok {
		t.Fatal("a negative TTL kept an answer")
	}
}

func TestKey(t *testing.T) {
	if Key("ab", "c") == Key("a", "bc") || Key("a:b", "") == Key("a", ":b") {
		t.Fatal("different parts make the same key")
	}
}

func TestCacheBounded(t *testing.T) {
	c := New[string](3)
	for i := range 10 {
		_, _ = c.Do(context.Background(), strconv.Itoa(i), func() (string, time.Duration) { return "", time.Minute })
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("cache holds %d answers, want 3", n)
	}
	// The most recent answers stay.
	calls := 0
	_, _ = c.Do(context.Background(), "9", func() (string, time.Duration) { calls++; return "", time.Minute })
	_, _ = c.Do(context.Background(), "0", func() (string, time.Duration) { calls++; return "", time.Minute })
	if calls != 1 {
		t.Fatalf("fetched %d times, want 1 (only the evicted key)", calls)
	}
}

func TestCacheSharesOneFetch(t *testing.T) {
	c := New[string](10)
	var fetches atomic.Int32
	release := make(chan struct{})
	refused := "no"
	var wg sync.WaitGroup
	results := make([]string, 8)
	for i := range results {
		wg.Go(func() {
			results[i], _ = c.Do(context.Background(), "k", func() (string, time.Duration) {
				fetches.Add(1)
				<-release
				return refused, 0
			})
		})
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
	if n := fetches.Load(); n > int32(len(results)) || c.Len() != 0 {
		t.Fatalf("fetches %d, cached %d (a zero duration caches nothing)", n, c.Len())
	}
}

func TestCacheWaiterLeaves(t *testing.T) {
	c := New[string](10)
	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan string)
	go func() {
		v, _ := c.Do(context.Background(), "k", func() (string, time.Duration) {
			close(started)
			<-release
			return "answer", time.Minute
		})
		first <- v
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Do(ctx, "k", func() (string, time.Duration) { t.Error("second fetch"); return "", 0 }); err == nil {
		t.Fatal("a waiter whose context ended got no error")
	}
	close(release)
	if v := <-first; v != "answer" {
		t.Fatalf("the caller that stayed got %v", v)
	}
	if v, ok := c.Get("k"); !ok || v != "answer" {
		t.Fatalf("answer not kept after the waiter left: %v %v", v, ok)
	}
}
