package stream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/testutil"
)

// expiringAuth lets every request in with a credential expiring at exp
// (Unix ns; 0: never).
type expiringAuth struct {
	allowAll
	exp atomic.Int64
}

func (a *expiringAuth) Authenticate(r *http.Request, o auth.Options) (auth.Principal, error) {
	p, _ := a.allowAll.Authenticate(r, o)
	if e := a.exp.Load(); e != 0 {
		p.Expiry = time.Unix(0, e)
	}
	return p, nil
}

// TestBehaviour is the behaviour of a stream, whichever transport moves its
// bytes: parked on the poller or on a goroutine of its own.
func TestBehaviour(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(*Config)
		run  func(t *testing.T, e *benchEnv, a *expiringAuth, m *closeReasons)
	}{
		{"opening block", nil, func(t *testing.T, e *benchEnv, _ *expiringAuth, _ *closeReasons) {
			ch := channel.MustMake("test", benchTenant, "open")
			ls := openLines(t, e, ch)
			if ct := ls.resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
			got := ls.until(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "data: ") })
			if len(got) != 4 || got[0] != "retry: 2000" || !strings.HasPrefix(got[1], "id: ") ||
				got[2] != "event: stream-open" || got[3] != `data: {"channels":["`+ch.String()+`"]}` {
				t.Fatalf("opening block %q", got)
			}
			if e.s.cfg.DisablePark || runtime.GOOS != "linux" {
				if n := e.s.parkedCount(); n != 0 {
					t.Fatalf("%d streams parked with DisablePark", n)
				}
			} else {
				testutil.Eventually(t, 5*time.Second, "the stream is parked", func() bool { return e.s.parkedCount() == 1 })
			}
		}},
		{"replay then live", nil, func(t *testing.T, e *benchEnv, _ *expiringAuth, _ *closeReasons) {
			ch := channel.MustMake("test", benchTenant, "replay")
			first := openLines(t, e, ch)
			got := first.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
			cursor := strings.TrimPrefix(got[len(got)-2], "id: ")
			first.resp.Body.Close()
			publishN(t, e, ch, 3)
			ls := openLinesFrom(t, e, cursor, ch)
			want := []string{"0", "1", "2", "live"}
			var datas []string
			go func() {
				time.Sleep(50 * time.Millisecond)
				msg := []event.Message{{Channel: ch, Type: "test.tick", Data: []byte("live")}}
				_, _ = e.b.Publish(context.Background(), msg)
			}()
			ls.until(t, 5*time.Second, func(l string) bool {
				if d, ok := strings.CutPrefix(l, "data: "); ok && !strings.HasPrefix(d, "{") {
					datas = append(datas, d)
				}
				return len(datas) == len(want)
			})
			if strings.Join(datas, ",") != strings.Join(want, ",") {
				t.Fatalf("got %q, want %q", datas, want)
			}
		}},
		{"live in order", nil, func(t *testing.T, e *benchEnv, _ *expiringAuth, _ *closeReasons) {
			ch := channel.MustMake("test", benchTenant, "live")
			ls := openLines(t, e, ch)
			ls.until(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "data: {") })
			publishN(t, e, ch, 200)
			n := 0
			ls.until(t, 5*time.Second, func(l string) bool {
				if d, ok := strings.CutPrefix(l, "data: "); ok {
					if d != strconv.Itoa(n) {
						t.Fatalf("event %d carries %s", n, d)
					}
					n++
				}
				return n == 200
			})
		}},
		{"keep-alive", func(c *Config) { c.KeepAlive = 200 * time.Millisecond }, func(t *testing.T, e *benchEnv, _ *expiringAuth, _ *closeReasons) {
			ls := openLines(t, e, channel.MustMake("test", benchTenant, "ka"))
			ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
			ls.until(t, 2*time.Second, func(l string) bool { return l == ": keep-alive" })
			ls.until(t, 2*time.Second, func(l string) bool { return l == ": keep-alive" })
		}},
		{"token expiry", nil, func(t *testing.T, e *benchEnv, a *expiringAuth, m *closeReasons) {
			exp := time.Now().Add(700 * time.Millisecond)
			a.exp.Store(exp.UnixNano())
			ls := openLines(t, e, channel.MustMake("test", benchTenant, "exp"))
			ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
			ls.until(t, 3*time.Second, func(l string) bool { return strings.Contains(l, string(event.EndTokenExpired)) })
			if now := time.Now(); now.Before(exp) || now.After(exp.Add(time.Second)) {
				t.Fatalf("token-expired at %v, expiry %v", now, exp)
			}
			if err := ls.end(t); !errors.Is(err, io.EOF) {
				t.Fatalf("body ended with %v", err)
			}
			testutil.Eventually(t, 2*time.Second, "closed as token-expired", func() bool { return m.count(event.EndTokenExpired) == 1 })
		}},
		{"slow-consumer cut", func(c *Config) { c.QueueSize = 8; c.WriteTimeout = 2 * time.Second }, func(t *testing.T, e *benchEnv, _ *expiringAuth, m *closeReasons) {
			ch := channel.MustMake("test", benchTenant, "slow")
			fast := openLines(t, e, ch)
			fast.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
			nc := dialStream(t, e, ch, 4096)
			_ = nc
			testutil.Eventually(t, 5*time.Second, "two streams open", func() bool { return e.s.Open() == 2 })
			big := []byte(`"` + strings.Repeat("z", 32<<10) + `"`)
			deadline := time.Now().Add(20 * time.Second)
			for i := 0; m.count(event.EndSlowConsumer) == 0; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("no slow-consumer cut after %d events", i)
				}
				burst(t, e, ch, 1, big)
				fast.until(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "data: \"z") })
			}
			testutil.Eventually(t, 5*time.Second, "the slow stream closes", func() bool { return e.s.Open() == 1 })
		}},
		{"drain", nil, func(t *testing.T, e *benchEnv, _ *expiringAuth, _ *closeReasons) {
			ch := channel.MustMake("test", benchTenant, "drain")
			ls := openLines(t, e, ch)
			ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.s.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			got := ls.until(t, 2*time.Second, func(l string) bool { return strings.Contains(l, string(event.EndShuttingDown)) })
			if n := len(got); n < 4 || !strings.HasPrefix(got[n-4], "retry: ") || got[n-2] != "event: stream-error" {
				t.Fatalf("drain wrote %q", got)
			}
			if err := ls.end(t); !errors.Is(err, io.EOF) {
				t.Fatalf("body ended with %v", err)
			}
		}},
		{"client gone", nil, func(t *testing.T, e *benchEnv, _ *expiringAuth, m *closeReasons) {
			ch := channel.MustMake("test", benchTenant, "gone")
			ls := openLines(t, e, ch)
			ls.until(t, 5*time.Second, func(l string) bool { return l == "event: stream-open" })
			ls.resp.Body.Close()
			testutil.Eventually(t, 3*time.Second, "the stream closes", func() bool { return e.s.Open() == 0 })
			if m.count("client-gone") != 1 {
				t.Fatalf("closed as %v", m.m)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, mutate func(*Config)) {
				a := &expiringAuth{}
				m := &closeReasons{}
				e := newBenchEnv(t, mutate, func(c *Config) {
					c.Auth, c.Metrics = a, m
					if tc.cfg != nil {
						tc.cfg(c)
					}
				})
				tc.run(t, e, a, m)
			})
		})
	}
}

// dialStream opens a stream on a raw connection with a small receive buffer,
// and never reads it.
func dialStream(t *testing.T, e *benchEnv, ch channel.Name, rcvbuf int) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if rcvbuf > 0 {
		_ = nc.(*net.TCPConn).SetReadBuffer(rcvbuf)
	}
	if _, err := nc.Write([]byte("GET /events?channel=" + ch.String() + " HTTP/1.1\r\nHost: test\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	return nc
}
