package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/publisher"
	"github.com/sluicehq/sluice/server"
)

func TestBatcherSizeAndOrder(t *testing.T) {
	e := newEnv(t, nil)
	evs := e.subscribe(chanA, chanB)
	ctx := context.Background()
	b := e.client().NewBatcher(publisher.BatchOptions{MaxEvents: 10, MaxDelay: time.Hour})
	for i := range 25 {
		ch := chanA
		if i%2 == 1 {
			ch = chanB
		}
		if err := b.Add(ctx, ch, "scan.progress", i); err != nil {
			t.Fatal(err)
		}
	}
	// Two full batches go out at once; the rest waits for Close.
	got := collect(t, evs, 20)
	if n := e.requests.Load(); n != 2 {
		t.Fatalf("%d requests for 20 events in batches of 10", n)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got = append(got, collect(t, evs, 5)...)
	if n := e.requests.Load(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	last := map[string]int{}
	for _, ev := range got {
		n, _ := strconv.Atoi(ev.Data)
		ch := "A"
		if n%2 == 1 {
			ch = "B"
		}
		if prev, ok := last[ch]; ok && n <= prev {
			t.Fatalf("channel %s: %d after %d", ch, n, prev)
		}
		last[ch] = n
	}
	if err := b.Add(ctx, chanA, "scan.progress", 1); !errors.Is(err, publisher.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if err := b.Close(ctx); !errors.Is(err, publisher.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestBatcherDelay(t *testing.T) {
	e := newEnv(t, nil)
	evs := e.subscribe(chanA)
	b := e.client().NewBatcher(publisher.BatchOptions{MaxDelay: 20 * time.Millisecond})
	defer b.Close(context.Background())
	for i := range 3 {
		if err := b.Add(context.Background(), chanA, "scan.progress", i); err != nil {
			t.Fatal(err)
		}
	}
	// No Flush: the delay sends them, in one request.
	collect(t, evs, 3)
	if n := e.requests.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestBatcherIsolatesABadEvent(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxEventBytes = 64 })
	evs := e.subscribe(chanA)
	ctx := context.Background()
	var mu sync.Mutex
	var failed []publisher.Event
	b := e.client().NewBatcher(publisher.BatchOptions{MaxDelay: time.Hour, OnError: func(evs []publisher.Event, err error) {
		if !publisher.IsCode(err, publisher.CodeEventTooLarge) {
			t.Errorf("OnError: %v", err)
		}
		mu.Lock()
		failed = append(failed, evs...)
		mu.Unlock()
	}})
	defer b.Close(ctx)
	_ = b.Add(ctx, chanA, "scan.progress", "first")
	_ = b.Add(ctx, chanA, "scan.progress", strings.Repeat("x", 100))
	_ = b.Add(ctx, chanA, "scan.progress", "third")
	err := b.Flush(ctx)
	var be *publisher.BatchError
	if !errors.As(err, &be) || be.Failed != 1 || !publisher.IsCode(err, publisher.CodeEventTooLarge) {
		t.Fatalf("Flush: %v", err)
	}
	got := collect(t, evs, 2)
	if got[0].Data != `"first"` || got[1].Data != `"third"` {
		t.Fatalf("delivered %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 1 || len(failed[0].Data.(json.RawMessage)) != 102 {
		t.Fatalf("failed %v", failed)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("second Flush reports old errors: %v", err)
	}
}

func TestBatcherRefusesBadNames(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client().NewBatcher(publisher.BatchOptions{})
	defer b.Close(context.Background())
	ctx := context.Background()
	if err := b.Add(ctx, "no-tenant:1", "scan.progress", 1); !publisher.IsCode(err, publisher.CodeMalformedChannel) {
		t.Fatalf("bad channel: %v", err)
	}
	if err := b.Add(ctx, chanA, "stream-reset", 1); !publisher.IsCode(err, publisher.CodeInvalidEvent) {
		t.Fatalf("reserved event: %v", err)
	}
	if err := b.Add(ctx, chanA, "scan.progress", make(chan int)); !publisher.IsCode(err, publisher.CodeInvalidEvent) {
		t.Fatalf("unencodable data: %v", err)
	}
	if err := b.Flush(ctx); err != nil || e.requests.Load() != 0 {
		t.Fatalf("Flush: %v, %d requests", err, e.requests.Load())
	}
}
