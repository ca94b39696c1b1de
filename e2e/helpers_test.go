package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/internal/syncbuf"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/valkey-io/valkey-go"
)

const (
	jwtSecret  = "e2e-secret-0123456789abcdef0123456789"
	publishKey = "e2e-publisher-key-0123456789"
	tenant     = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveSluiceBinary()
	os.Exit(code)
}

// redisURL returns the shared Redis of the tests, or skips.
func redisURL(t *testing.T) string { return redistest.URL(t, "the multi-process tests") }

func random() string { return redistest.Random() }

// redisClient returns a plain client of url, closed at cleanup.
func redisClient(t *testing.T, u string) valkey.Client { return redistest.Client(t, u) }

// deleteKeys deletes every key under prefix and reports how many there were.
func deleteKeys(t *testing.T, c valkey.Client, prefix string) int {
	return redistest.DeleteKeys(t, c, prefix)
}

// deployment is the shared settings of the instances of one test: a Redis
// prefix of the test's own, whose keys are deleted at cleanup.
type deployment struct {
	t      *testing.T
	url    string // Redis
	prefix string
	env    map[string]string
}

func newDeployment(t *testing.T, redis string, env map[string]string) *deployment {
	d := &deployment{t: t, url: redis, prefix: "sluicetest:" + random() + ":", env: map[string]string{}}
	c := redisClient(t, redis)
	// Registered first, so it runs after the processes are stopped.
	t.Cleanup(func() { deleteKeys(t, c, d.prefix) })
	d.env["SLUICE_BROKER"] = "redis"
	d.env["SLUICE_REDIS_URL"] = redis
	d.env["SLUICE_REDIS_PREFIX"] = d.prefix
	for k, v := range env {
		d.env[k] = v
	}
	return d
}

func (d *deployment) start(name string) *proc { return startSluice(d.t, name, d.env) }

// proc is a running sluice process.
type proc struct {
	t    *testing.T
	name string
	url  string // http://127.0.0.1:<port>
	cmd  *exec.Cmd
	logs *syncBuffer
	done <-chan struct{} // closed when the process has exited
}

// syncBuffer collects a process's output, written and read concurrently.
type syncBuffer = syncbuf.Buffer

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startSluice starts the sluice binary with env (plus the tests' secret and
// publisher key) on a port of its choosing and waits until /healthz
// answers. The process is killed, by its PID, at cleanup if it still runs.
func startSluice(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	vars := map[string]string{
		"SLUICE_JWT_SECRET":   jwtSecret,
		"SLUICE_PUBLISH_KEYS": publishKey,
		"SLUICE_LOG_LEVEL":    "debug",
	}
	for k, v := range env {
		vars[k] = v
	}
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			environ = append(environ, kv)
		}
	}
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	return launch(t, name, environ, "")
}

// launch starts the binary with environ on addr (a port of its choosing
// when empty) and waits until /healthz answers.
func launch(t *testing.T, name string, environ []string, addr string) *proc {
	t.Helper()
	s := testutil.StartSluice(t, testutil.SluiceConfig{Env: environ, Addr: addr, Timeout: 15 * time.Second})
	p := &proc{t: t, name: name, url: s.URL, cmd: s.Cmd, logs: s.Output, done: s.Done}
	t.Cleanup(p.cleanup)
	return p
}

func (p *proc) cleanup() {
	if p.running() {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
	if p.t.Failed() {
		logs := p.logs.String()
		if len(logs) > 16<<10 {
			logs = "…" + logs[len(logs)-16<<10:]
		}
		p.t.Logf("logs of %s:\n%s", p.name, logs)
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the process, by its PID.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v to pid %d: %v", p.name, sig, p.cmd.Process.Pid, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %v", p.name, d)
		return -1
	}
}

var apiClient = &http.Client{Timeout: 10 * time.Second}

// get returns the status and problem code (if any) of GET path.
func (p *proc) get(path string) (int, string, error) {
	resp, err := apiClient.Get(p.url + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body struct {
		Code string `json:"code"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	return resp.StatusCode, body.Code, nil
}

// publish posts one event and returns the status, the event's id (200) or
// the problem code.
func (p *proc) publish(ch, typ string, data any) (int, string) {
	p.t.Helper()
	return p.publishBody(map[string]any{"channel": ch, "event": typ, "data": data})
}

func (p *proc) publishBody(body any) (int, string) {
	p.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		p.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.url+"/publish", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+publishKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var reply struct {
		IDs  []string `json:"ids"`
		Code string   `json:"code"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&reply)
	if resp.StatusCode == http.StatusOK && len(reply.IDs) > 0 {
		return resp.StatusCode, reply.IDs[0]
	}
	return resp.StatusCode, reply.Code
}

// mustPublish publishes and fails the test unless the publish is
// acknowledged.
func (p *proc) mustPublish(ch, typ string, data any) {
	p.t.Helper()
	if st, s := p.publish(ch, typ, data); st != http.StatusOK {
		p.t.Fatalf("%s: publish to %s: %d %s", p.name, ch, st, s)
	}
}

func token(t *testing.T, user string) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "tenant_id": tenant, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newChannel returns a channel name of the tests' tenant.
func newChannel(feature string) string {
	return feature + ":" + tenant + ":" + random()
}

// block is one block of an event stream, as sent: fields and comments
// until a blank line.
type block = testutil.Block

// sseStream is an open GET /events response read block by block.
type sseStream struct {
	t      *testing.T
	name   string
	status int
	header http.Header
	blocks chan block // closed at the end of the response
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error // why the response ended
	lastID string
}

var streamClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// open opens a stream on channels at p, resuming from cursor when it is not
// empty. It fails the test unless the answer is 200 text/event-stream.
func (p *proc) open(name string, cursor string, channels ...string) *sseStream {
	p.t.Helper()
	q := url.Values{"channel": channels}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/events?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token(p.t, "user-1"))
	if cursor != "" {
		req.Header.Set("Last-Event-ID", cursor)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	rc := make(chan result, 1)
	go func() {
		resp, err := streamClient.Do(req)
		rc <- result{resp, err}
	}()
	var r result
	select {
	case r = <-rc:
	case <-time.After(10 * time.Second):
		cancel()
		p.t.Fatalf("%s: GET /events on %s: no answer within 10 s", name, p.name)
	}
	if r.err != nil {
		cancel()
		p.t.Fatalf("%s: GET /events on %s: %v", name, p.name, r.err)
	}
	s := &sseStream{t: p.t, name: name, status: r.resp.StatusCode, header: r.resp.Header, blocks: make(chan block, 1<<16), cancel: cancel}
	p.t.Cleanup(func() { cancel() })
	if s.status != http.StatusOK || !strings.HasPrefix(s.header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(r.resp.Body, 4096))
		r.resp.Body.Close()
		p.t.Fatalf("%s: GET /events on %s: %d %s %s", name, p.name, s.status, s.header.Get("Content-Type"), b)
	}
	go s.read(r.resp.Body)
	return s
}

func (s *sseStream) read(body io.ReadCloser) {
	defer body.Close()
	defer close(s.blocks)
	r := testutil.NewBlockReader(body)
	for {
		b, err := r.Next()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		s.blocks <- b
	}
}

// close ends the stream from the client's side.
func (s *sseStream) close() { s.cancel() }

// next returns the next block, or fails the test after d or at the end of
// the response.
func (s *sseStream) next(d time.Duration) block {
	s.t.Helper()
	b, ok := s.tryNext(d)
	if !ok {
		s.t.Fatalf("%s: no block within %v (response ended: %v)", s.name, d, s.ended())
	}
	return b
}

// tryNext returns the next block; false after d or at the end of the
// response.
func (s *sseStream) tryNext(d time.Duration) (block, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case b, ok := <-s.blocks:
		if ok && b.HasID {
			s.lastID = b.ID
		}
		return b, ok
	case <-t.C:
		return block{}, false
	}
}

// ended returns why the response ended, nil while it is open.
func (s *sseStream) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// nextEvent returns the next block that is not a keep-alive.
func (s *sseStream) nextEvent(d time.Duration) block {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		b := s.next(time.Until(deadline))
		if !b.KeepAlive() {
			return b
		}
	}
}

// expectOpen reads the first block, which must be stream-open with a retry
// and a cursor, and returns it.
func (s *sseStream) expectOpen() block {
	s.t.Helper()
	b := s.next(10 * time.Second)
	if b.Event != "stream-open" || !b.HasID || b.ID == "" || b.Retry == "" {
		s.t.Fatalf("%s: first block %v, want stream-open with id and retry", s.name, b)
	}
	return b
}

// expectReset reads the block after stream-open, which must be
// stream-reset, and returns its reason.
func (s *sseStream) expectReset() string {
	s.t.Helper()
	b := s.nextEvent(10 * time.Second)
	var r struct {
		Reason string `json:"reason"`
	}
	if b.Event != "stream-reset" || b.HasID || json.Unmarshal([]byte(b.Data), &r) != nil || r.Reason == "" {
		s.t.Fatalf("%s: block %v, want stream-reset with a reason and no id", s.name, b)
	}
	return r.Reason
}

// expectMidReset reads the next block, which must be a stream-reset in the
// middle of a stream: with a reason and an id naming where the stream goes
// on (the stream's lastID becomes it).
func (s *sseStream) expectMidReset() string {
	s.t.Helper()
	b := s.nextEvent(10 * time.Second)
	var r struct {
		Reason string `json:"reason"`
	}
	if b.Event != "stream-reset" || !b.HasID || b.ID == "" || json.Unmarshal([]byte(b.Data), &r) != nil || r.Reason == "" {
		s.t.Fatalf("%s: block %v, want a mid-stream stream-reset with a reason and an id", s.name, b)
	}
	return r.Reason
}

// events reads n events (keep-alives skipped), failing on any stream-* block.
func (s *sseStream) events(n int, d time.Duration) []block {
	s.t.Helper()
	deadline := time.Now().Add(d)
	out := make([]block, 0, n)
	for len(out) < n {
		b := s.nextEvent(time.Until(deadline))
		if strings.HasPrefix(b.Event, "stream-") {
			s.t.Fatalf("%s: %v after %d of %d events", s.name, b, len(out), n)
		}
		out = append(out, b)
	}
	return out
}

// quiet checks that no event arrives within d (keep-alives allowed).
func (s *sseStream) quiet(d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, ok := s.tryNext(time.Until(deadline))
		if !ok {
			if err := s.ended(); err != nil {
				s.t.Fatalf("%s: response ended: %v", s.name, err)
			}
			return
		}
		if !b.KeepAlive() {
			s.t.Fatalf("%s: unexpected %v", s.name, b)
		}
	}
}

// seqs returns the n of events whose data is {"n": <n>}.
func seqs(t *testing.T, bs []block) []int {
	t.Helper()
	out := make([]int, len(bs))
	for i, b := range bs {
		var v struct {
			N *int `json:"n"`
		}
		if err := json.Unmarshal([]byte(b.Data), &v); err != nil || v.N == nil {
			t.Fatalf("event %v: data is not {\"n\": …}", b)
		}
		out[i] = *v.N
	}
	return out
}

// startRedisServer starts a redis-server of the test's own on a free port,
// without persistence, killed at cleanup (internal/redistest.Server: Kill,
// then Start brings it back empty).
func startRedisServer(t *testing.T) *redistest.Server { return redistest.StartServer(t) }
