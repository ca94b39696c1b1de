//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"github.com/sluicehq/sluice/internal/testutil"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stuckStream opens a stream on channel whose client never reads, over a
// connection with a tiny receive buffer, so that the server's writes to it
// block once the socket's buffers are full.
func (p *proc) stuckStream(channel string) {
	p.t.Helper()
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	tr := &http.Transport{DialContext: dialer.DialContext, DisableCompression: true}
	ctx, cancel := context.WithCancel(context.Background())
	p.t.Cleanup(func() { cancel(); tr.CloseIdleConnections() })
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/events?"+url.Values{"channel": {channel}}.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token(p.t, "user-2"))
	resp, err := (&http.Client{Transport: tr, Timeout: 0}).Do(req)
	if err != nil {
		p.t.Fatalf("stuck stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("stuck stream: %d", resp.StatusCode)
	}
	p.t.Cleanup(func() { resp.Body.Close() })
}

// expectDrainEnd reads the end of a drained stream: a block holding only a
// retry within [lo, hi] ms, then stream-error shutting-down, then the end of
// the response.
func (s *sseStream) expectDrainEnd(lo, hi int) {
	s.t.Helper()
	b := s.nextEvent(10 * time.Second)
	ms, err := strconv.Atoi(b.Retry)
	if err != nil || b.Event != "" || b.Data != "" || b.HasID || ms < lo || ms > hi {
		s.t.Fatalf("%s: %v, want a block of only retry: in [%d, %d]", s.name, b, lo, hi)
	}
	b = s.nextEvent(10 * time.Second)
	var e struct {
		Condition string `json:"condition"`
		Text      string `json:"text"`
	}
	if b.Event != "stream-error" || b.HasID || json.Unmarshal([]byte(b.Data), &e) != nil ||
		e.Condition != "shutting-down" || e.Text == "" {
		s.t.Fatalf("%s: %v, want stream-error shutting-down", s.name, b)
	}
	if b, ok := s.tryNext(10 * time.Second); ok {
		s.t.Fatalf("%s: %v after stream-error", s.name, b)
	}
	if s.ended() == nil {
		s.t.Fatalf("%s: the response did not end after stream-error", s.name)
	}
}

// SIGTERM drains (protocol.md §6 shutting-down), with the memory broker.
func TestDrainOnSIGTERM(t *testing.T) {
	p := startSluice(t, "drain", map[string]string{
		"SLUICE_RETRY":         "1s",
		"SLUICE_DRAIN_SPREAD":  "3s",
		"SLUICE_WRITE_TIMEOUT": "5s",
	})
	ch := newChannel("jobs")
	s1, s2 := p.open("stream 1", "", ch), p.open("stream 2", "", ch)
	s1.expectOpen()
	s2.expectOpen()

	// A client that reads nothing keeps the drain waiting (up to the write
	// timeout), long enough to watch the server while it drains.
	bulk := newChannel("bulk")
	p.stuckStream(bulk)
	big := strings.Repeat("x", 60000)
	for range 6 {
		evs := make([]map[string]any, 25)
		for i := range evs {
			evs[i] = map[string]any{"channel": bulk, "event": "bulk.chunk", "data": big}
		}
		if st, s := p.publishBody(map[string]any{"events": evs}); st != http.StatusOK {
			t.Fatalf("bulk publish: %d %s", st, s)
		}
	}

	for n := range 3 {
		p.mustPublish(ch, "job.progress", map[string]int{"n": n})
	}
	p.signal(syscall.SIGTERM)

	testutil.Eventually(t, 5*time.Second, "/readyz answers 503 while draining", func() bool {
		st, code, _ := p.get("/readyz")
		return st == http.StatusServiceUnavailable && code == "draining"
	})
	late := p.open("stream opened during the drain", "", ch)
	late.expectDrainEnd(1000, 3000)

	for _, s := range []*sseStream{s1, s2} {
		if got := seqs(t, s.events(3, 10*time.Second)); !slices.Equal(got, []int{0, 1, 2}) {
			t.Errorf("%s: %v, want [0 1 2]", s.name, got)
		}
		s.expectDrainEnd(1000, 3000)
	}
	if code := p.wait(40 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
