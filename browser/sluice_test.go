package browser

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sluicehq/sluice/internal/testutil"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the dev console screenshot to docs/img/demo.png")

const (
	jwtSecret  = "browser-test-secret-0123456789abcdef"
	publishKey = "browser-test-publisher-key"
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	stopChromium()
	testutil.RemoveSluiceBinary()
	os.Exit(code)
}

// proc is a running sluice process.
type proc struct {
	*testutil.Sluice
	t    *testing.T
	base string
}

// startSluice runs cmd/sluice with env (SLUICE_* variables of the test's own
// environment are not passed on) and waits until it is ready. The process is
// killed when the test ends, if still running.
func startSluice(t *testing.T, args []string, env ...string) *proc {
	t.Helper()
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			environ = append(environ, kv)
		}
	}
	environ = append(environ, "SLUICE_LOG_FORMAT=text")
	environ = append(environ, env...)
	s := testutil.StartSluice(t, testutil.SluiceConfig{Args: args, Env: environ, Ready: func(s *testutil.Sluice) bool {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sluice output:\n%s", s.Output)
		}
	})
	return &proc{Sluice: s, t: t, base: s.URL}
}

// stop sends SIGTERM and waits for a clean exit (the graceful drain).
func (p *proc) stop() {
	p.t.Helper()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(40 * time.Second):
		p.t.Fatal("sluice did not exit within 40s of SIGTERM")
	}
	if !p.Cmd.ProcessState.Success() {
		p.t.Fatalf("sluice exited with %v", p.Cmd.ProcessState)
	}
}

// freeAddr returns a loopback address nobody listens on, for a process that
// must come back on the same address after a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// publish posts one event through POST /publish.
func publish(t *testing.T, base, key, ch, typ string, data any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"channel": ch, "event": typ, "data": data})
	req, _ := http.NewRequest(http.MethodPost, base+"/publish", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("publish: %s %s", resp.Status, b)
	}
}

// mint returns an HS256 access token for user in tenant, valid for ttl.
func mint(t *testing.T, user, tenant string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "tenant_id": tenant, "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// app is the test's own web application: a page using sluice.js, the
// script, and a token endpoint minting tokens as a backend would.
type app struct {
	srv    *httptest.Server
	tokens atomic.Int64 // tokens minted
}

func newApp(t *testing.T) *app {
	t.Helper()
	script, err := os.ReadFile(filepath.Join("..", "web", "sluice.js"))
	if err != nil {
		t.Fatal(err)
	}
	a := &app{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, testPage)
	})
	mux.HandleFunc("GET /sluice.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(script)
	})
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		secs, _ := strconv.Atoi(q.Get("ttl"))
		a.tokens.Add(1)
		io.WriteString(w, mint(t, q.Get("user"), q.Get("tenant"), time.Duration(secs)*time.Second))
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// testPage keeps what each subscription saw in window.subs, for the test
// to read; it records every EventSource URL in window.esURLs.
const testPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>sluice.js test</title>
<script src="/sluice.js"></script></head>
<body>
<script>
const NativeEventSource = window.EventSource;
window.esURLs = [];
window.EventSource = function (u, o) { esURLs.push(String(u)); return new NativeEventSource(u, o); };
window.subs = [];
window.start = function (o) {
  const s = { got: [], opens: [], resets: [], errors: [] };
  const q = new URLSearchParams({ tenant: o.tenant, user: o.user || "user-1", ttl: String(o.ttl || 3600) });
  s.sub = Sluice.subscribe({
    url: o.sluice,
    channels: o.channels,
    events: ["test.said"],
    ticket: !!o.ticket,
    getToken: async () => (await fetch("/token?" + q)).text(),
    onOpen: info => s.opens.push(info),
    onEvent: (type, data, id) => s.got.push({ type, data, id }),
    onReset: reason => s.resets.push(reason),
    onError: (condition, text) => { console.log("onError", condition, text); s.errors.push({ condition, text }); },
  });
  subs.push(s);
  return subs.length - 1;
};
window.state = i => ({ got: subs[i].got, opens: subs[i].opens, resets: subs[i].resets, errors: subs[i].errors });
</script>
</body></html>
`

// subState is what one subscription of the test page saw.
type subState struct {
	Got []struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
		ID   string          `json:"id"`
	} `json:"got"`
	Opens []struct {
		Channels []string `json:"channels"`
		Cursor   string   `json:"cursor"`
	} `json:"opens"`
	Resets []string `json:"resets"`
	Errors []struct {
		Condition string `json:"condition"`
		Text      string `json:"text"`
	} `json:"errors"`
}

func (s subState) conditions() []string {
	var out []string
	for _, e := range s.Errors {
		out = append(out, e.Condition)
	}
	return out
}

// texts returns the "text" member of every event's data, in order.
func (s subState) texts() []string {
	var out []string
	for _, g := range s.Got {
		var d struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(g.Data, &d)
		out = append(out, d.Text)
	}
	return out
}

type subOptions struct {
	Sluice   string   `json:"sluice"`
	Channels []string `json:"channels"`
	Tenant   string   `json:"tenant"`
	User     string   `json:"user,omitempty"`
	TTL      int      `json:"ttl,omitempty"` // token lifetime in seconds
	Ticket   bool     `json:"ticket,omitempty"`
}

// subscribe starts a subscription on the test page and returns its index.
func (p *page) subscribe(o subOptions) int {
	p.t.Helper()
	js, _ := json.Marshal(o)
	var i int
	p.must("start("+string(js)+")", &i)
	return i
}

func (p *page) state(i int) subState {
	p.t.Helper()
	var s subState
	p.must("state("+strconv.Itoa(i)+")", &s)
	return s
}

// waitState polls subscription i until ok holds, failing after timeout.
func (p *page) waitState(i int, timeout time.Duration, what string, ok func(subState) bool) subState {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.state(i)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waited %v for %s; subscription %d: %+v", timeout, what, i, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *page) esURLs() []string {
	p.t.Helper()
	var u []string
	p.must("esURLs", &u)
	return u
}

// gatewayEnv is the environment of a gateway the test page may use.
func gatewayEnv(origin string, extra ...string) []string {
	return append([]string{
		"SLUICE_JWT_SECRET=" + jwtSecret,
		"SLUICE_PUBLISH_KEYS=" + publishKey,
		"SLUICE_ALLOW_ORIGINS=" + origin,
		"SLUICE_RETRY=500ms",
		"SLUICE_DRAIN_SPREAD=1s",
		"SLUICE_LOG_LEVEL=debug",
	}, extra...)
}

func queryHas(raw, key string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Query().Has(key)
}
