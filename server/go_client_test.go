package server_test

// The Go subscriber client (package client) against the real gateway.

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// TestGoClientAgainstGateway runs the Go subscriber client against the real
// gateway: short-lived tokens expire on the open stream again and again, the
// client refreshes them and resumes with ?lastEventId=, and every event
// arrives exactly once, in order.
func TestGoClientAgainstGateway(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.Retry = 100 * time.Millisecond })
	ch := chanName("llm", tenantA, "tokens")
	var minted atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 60
	s := client.Subscribe(ctx, client.Config{
		URL: e.srv.URL, Channels: []string{ch}, UseQueryToken: true, MinBackoff: 50 * time.Millisecond,
		Token: func(context.Context) (string, error) {
			minted.Add(1)
			exp := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
			return token(t, "u1", tenantA, 0, map[string]any{"exp": exp.Unix()}), nil
		},
	})
	defer s.Close()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		testutil.Eventually(t, 5*time.Second, "the client connects", func() bool { return e.gw.OpenStreams() == 1 })
		for i := range n {
			e.mustPublish(ch, "llm.token", i)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var got []int
	ended := 0
	for len(got) < n {
		it, err := s.Next()
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		switch it := it.(type) {
		case client.Message:
			v, _ := strconv.Atoi(it.Data)
			got = append(got, v)
		case client.Ended:
			if it.Condition != event.EndTokenExpired {
				t.Fatalf("ended: %s", it.Condition)
			}
			ended++
		case client.Reset:
			t.Fatalf("reset: %s", it.Reason)
		}
	}
	<-pubDone
	for i, v := range got {
		if v != i {
			t.Fatalf("event %d is %d: lost or repeated (%v)", i, v, got)
		}
	}
	if ended < 2 {
		t.Fatalf("only %d token expiries over %d events; the test did not exercise refresh", ended, n)
	}
	t.Logf("%d events across %d token expiries, %d tokens minted", n, ended, minted.Load())
}

// TestGoClientTerminalErrors checks that refusals reach the client typed.
func TestGoClientTerminalErrors(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := client.Subscribe(ctx, client.Config{
		URL:      e.srv.URL,
		Channels: []string{chanName("doc", tenantB, "x")},
		Token:    func(context.Context) (string, error) { return token(t, "u1", tenantA, time.Hour, nil), nil },
	})
	defer s.Close()
	for {
		_, err := s.Next()
		if err == nil {
			continue
		}
		var he *client.HTTPError
		if !errors.As(err, &he) || he.Status != 403 || he.Code != "foreign_tenant" {
			t.Fatalf("got %v", err)
		}
		return
	}
}
