package browser

// A minimal Chrome DevTools Protocol client: chromium is started with
// --remote-debugging-port=0, its DevTools WebSocket address is read from
// standard error, and commands travel over a small RFC 6455 client (text
// frames, client-side masking, ping/pong, fragments). Pages are attached
// with flattened sessions on the one browser connection.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
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
)

const chromiumPath = "/usr/bin/chromium"

// chromium is the browser shared by every test of the package, started on
// first use and stopped by TestMain.
var chromium struct {
	once sync.Once
	b    *browserConn
	err  error
}

// needChromium returns the shared browser, skipping the test when Chromium
// is not installed (failing under CI=true).
func needChromium(t *testing.T) *browserConn {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := "browser tests need Chromium at " + chromiumPath + ": apt-get install -y chromium chromium-driver"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	chromium.once.Do(func() { chromium.b, chromium.err = launchChromium() })
	if chromium.err != nil {
		t.Fatalf("starting chromium: %v", chromium.err)
	}
	return chromium.b
}

func stopChromium() {
	if chromium.b != nil {
		chromium.b.close()
	}
}

// browserConn is one chromium process and its DevTools connection.
type browserConn struct {
	cmd     *exec.Cmd
	dir     string
	ws      *wsConn
	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpMessage
	events  map[string]func(method string, params json.RawMessage) // by session id
	done    chan struct{}
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func launchChromium() (*browserConn, error) {
	dir, err := os.MkdirTemp("", "sluice-chromium-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--remote-debugging-port=0", "--user-data-dir="+dir,
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--hide-scrollbars", "--window-size=1000,720", "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "DevTools listening on "); ok {
				addr <- strings.TrimSpace(a)
			}
		}
		close(addr)
	}()
	fail := func(err error) (*browserConn, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
		return nil, err
	}
	var wsURL string
	select {
	case a, ok := <-addr:
		if !ok {
			return fail(errors.New("chromium exited without a DevTools address"))
		}
		wsURL = a
	case <-time.After(30 * time.Second):
		return fail(errors.New("no DevTools address within 30s"))
	}
	ws, err := dialWS(wsURL)
	if err != nil {
		return fail(err)
	}
	b := &browserConn{cmd: cmd, dir: dir, ws: ws, pending: map[int64]chan cdpMessage{},
		events: map[string]func(string, json.RawMessage){}, done: make(chan struct{})}
	go b.readLoop()
	return b, nil
}

func (b *browserConn) close() {
	_ = b.ws.close()
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
	os.RemoveAll(b.dir)
}

func (b *browserConn) readLoop() {
	defer close(b.done)
	for {
		data, err := b.ws.read()
		if err != nil {
			return
		}
		var m cdpMessage
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.pending[m.ID]; ch != nil {
				delete(b.pending, m.ID)
				ch <- m
			}
		} else if f := b.events[m.SessionID]; f != nil {
			f(m.Method, m.Params)
		}
		b.mu.Unlock()
	}
}

// call sends one command (to a page's session when session is not empty)
// and decodes its result into out.
func (b *browserConn) call(ctx context.Context, session, method string, params, out any) error {
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	msg, _ := json.Marshal(cdpMessage{ID: id, SessionID: session, Method: method, Params: raw})
	if err := b.ws.write(msg); err != nil {
		return err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-b.done:
		return fmt.Errorf("%s: the DevTools connection closed", method)
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// page is one browser tab.
type page struct {
	t       *testing.T
	b       *browserConn
	target  string
	session string
	mu      sync.Mutex
	console []string
}

// newPage opens a blank tab, closed when the test ends; on failure the
// tab's console output is logged.
func newPage(t *testing.T) *page {
	t.Helper()
	b := needChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tgt struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &tgt); err != nil {
		t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": tgt.TargetID, "flatten": true}, &att); err != nil {
		t.Fatal(err)
	}
	p := &page{t: t, b: b, target: tgt.TargetID, session: att.SessionID}
	b.mu.Lock()
	b.events[p.session] = p.event
	b.mu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			t.Logf("browser console:\n  %s", strings.Join(p.console, "\n  "))
			p.mu.Unlock()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": p.target}, nil)
		b.mu.Lock()
		delete(b.events, p.session)
		b.mu.Unlock()
	})
	for _, m := range []string{"Page.enable", "Runtime.enable"} {
		if err := b.call(ctx, p.session, m, struct{}{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// event records console output and uncaught exceptions (called with b.mu
// held).
func (p *page) event(method string, params json.RawMessage) {
	var line string
	switch method {
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		_ = json.Unmarshal(params, &e)
		parts := []string{e.Type + ":"}
		for _, a := range e.Args {
			if a.Value != nil {
				parts = append(parts, fmt.Sprint(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		line = strings.Join(parts, " ")
	case "Runtime.exceptionThrown":
		var e struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		_ = json.Unmarshal(params, &e)
		line = "exception: " + e.Details.Text + " " + e.Details.Exception.Description
	default:
		return
	}
	p.mu.Lock()
	p.console = append(p.console, line)
	p.mu.Unlock()
}

// navigate loads u and waits for its load event to have fired.
func (p *page) navigate(u string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.b.call(ctx, p.session, "Page.navigate", map[string]any{"url": u}, &res); err != nil {
		p.t.Fatal(err)
	}
	if res.ErrorText != "" {
		p.t.Fatalf("navigating to %s: %s", u, res.ErrorText)
	}
	p.waitFor(`document.readyState === "complete"`, 30*time.Second)
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its JSON value into out, when not nil.
func (p *page) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.b.call(ctx, p.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "awaitPromise": true, "returnByValue": true,
	}, &res)
	if err != nil {
		return err
	}
	if res.Exception != nil {
		return fmt.Errorf("%s: %s %s", expr, res.Exception.Text, res.Exception.Exception.Description)
	}
	if out != nil && len(res.Result.Value) > 0 {
		return json.Unmarshal(res.Result.Value, out)
	}
	return nil
}

// must evaluates expr, failing the test on an error.
func (p *page) must(expr string, out any) {
	p.t.Helper()
	if err := p.eval(expr, out); err != nil {
		p.t.Fatal(err)
	}
}

// waitFor polls expr until it is truthy, failing the test after timeout.
func (p *page) waitFor(expr string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		var ok bool
		if last = p.eval("!!("+expr+")", &ok); last == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waited %v for %s (last error: %v)", timeout, expr, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot captures the visible page as PNG.
func (p *page) screenshot() []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res struct {
		Data []byte `json:"data"` // base64 in JSON
	}
	if err := p.b.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &res); err != nil {
		p.t.Fatal(err)
	}
	return res.Data
}

// wsConn is a client WebSocket connection (RFC 6455), enough for DevTools.
type wsConn struct {
	c  net.Conn
	r  *bufio.Reader
	wm sync.Mutex
}

func dialWS(raw string) (*wsConn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", u.RequestURI(), u.Host, k)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		c.Close()
		return nil, fmt.Errorf("websocket handshake with %s: %s", u.Host, resp.Status)
	}
	return &wsConn{c: c, r: r}, nil
}

const (
	opCont  = 0x0
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

func (w *wsConn) writeFrame(op byte, payload []byte) error {
	w.wm.Lock()
	defer w.wm.Unlock()
	hdr := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	buf := make([]byte, len(hdr)+len(payload))
	copy(buf, hdr)
	for i, c := range payload {
		buf[len(hdr)+i] = c ^ mask[i%4]
	}
	_, err := w.c.Write(buf)
	return err
}

func (w *wsConn) write(msg []byte) error { return w.writeFrame(opText, msg) }

// read returns the next complete text message, answering pings.
func (w *wsConn) read() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(w.r, h[:]); err != nil {
			return nil, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0F
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(w.r, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(w.r, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		var mask []byte
		if h[1]&0x80 != 0 {
			mask = make([]byte, 4)
			if _, err := io.ReadFull(w.r, mask); err != nil {
				return nil, err
			}
		}
		if n > 256<<20 {
			return nil, fmt.Errorf("websocket frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(w.r, payload); err != nil {
			return nil, err
		}
		if mask != nil {
			for i := range payload {
				payload[i] ^= mask[i%4]
			}
		}
		switch op {
		case opPing:
			if err := w.writeFrame(opPong, payload); err != nil {
				return nil, err
			}
			continue
		case opPong:
			continue
		case opClose:
			return nil, io.EOF
		case opText, opCont:
			msg = append(msg, payload...)
			if fin {
				return msg, nil
			}
		}
	}
}

func (w *wsConn) close() error {
	_ = w.writeFrame(opClose, []byte{0x03, 0xE8}) // 1000 normal closure
	return w.c.Close()
}
