package browser

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// consoleCfg is what the dev console was handed by --dev.
type consoleCfg struct {
	Tenant     string `json:"tenant"`
	Token      string `json:"token"`
	PublishKey string `json:"publishKey"`
	Channel    string `json:"channel"`
}

// row is one row of the console's log.
type row struct {
	Kind, Type, ID, Time, Data, Note string
	Restored                         bool
}

const rowsJS = `[...document.querySelectorAll("#events tr")].reverse().map(tr => ({
  Kind: tr.className.split(" ")[0], Type: tr.dataset.type, ID: tr.dataset.id || "",
  Time: tr.querySelector(".time").textContent, Data: tr.querySelector(".data pre").textContent,
  Note: (tr.querySelector(".data .note") || {}).textContent || "", Restored: tr.classList.contains("restored")}))`

func rows(p *page) []row {
	p.t.Helper()
	var r []row
	p.must(rowsJS, &r)
	return r
}

func hasRow(typ, text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#events tr")].some(tr => tr.dataset.type === %q && tr.textContent.includes(%q))`, typ, text)
}

// TestDevConsole drives the --dev console in Chromium: it is marked as a
// development tool, shows events of any type published by an HTTP POST
// with their id, time and data, publishes from its own form, subscribes to
// other channels of the demo tenant, and after a reload resumes from the
// last id without losing or repeating an event.
func TestDevConsole(t *testing.T) {
	needChromium(t)
	addr := freeAddr(t)
	srv := startSluice(t, []string{"--dev"}, "SLUICE_ADDR="+addr, "XDG_CONFIG_HOME="+t.TempDir())
	base := srv.base

	// No favicon 404: the page carries its icon, /favicon.ico is 204.
	resp, err := http.Get(base + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("/favicon.ico: %s", resp.Status)
	}

	p := newPage(t)
	if err := p.b.call(t.Context(), p.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": 1100, "height": 700, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		t.Fatal(err)
	}
	p.navigate(base + "/")
	p.waitFor(`document.getElementById("status").className === "open"`, 15*time.Second)
	var cfg consoleCfg
	p.must("cfg", &cfg)
	if !strings.HasPrefix(cfg.Channel, "demo:"+cfg.Tenant+":") || cfg.PublishKey == "" || cfg.Token == "" {
		t.Fatalf("console config %+v", cfg)
	}
	var marked bool
	p.must(`document.title.includes("development tool") && document.getElementById("devtool").textContent.includes("Development tool")`, &marked)
	if !marked {
		t.Fatal("the console is not marked as a development tool")
	}
	p.waitFor(hasRow("stream-open", cfg.Channel), 10*time.Second)

	// Any event type, published over HTTP, shows with id, time and data.
	publish(t, base, cfg.PublishKey, cfg.Channel, "scan.progress", map[string]any{"pct": 10, "text": "first"})
	p.waitFor(hasRow("scan.progress", `"pct":10`), 10*time.Second)
	publish(t, base, cfg.PublishKey, cfg.Channel, "order_item.shipped", map[string]any{"text": "second"})
	p.waitFor(hasRow("order_item.shipped", "second"), 10*time.Second)
	for _, r := range rows(p) {
		if r.Kind == "event" && (r.ID == "" || len(r.Time) != len("15:04:05.000")) {
			t.Fatalf("row without id or time: %+v", r)
		}
	}

	// The form publishes any type with the dev key it was given.
	p.must(`document.getElementById("pub-event").value = "note.added";
	        document.getElementById("pub-data").value = '{"text": "typed in the console"}';
	        document.querySelector("#publish button").click(); 1`, nil)
	p.waitFor(hasRow("note.added", "typed in the console"), 10*time.Second)
	p.waitFor(`document.getElementById("pub-result").textContent.startsWith("published: ")`, 5*time.Second)
	// A refused publish says why, in words.
	p.must(`document.getElementById("pub-event").value = "Bad Type"; document.querySelector("#publish button").click(); 1`, nil)
	p.waitFor(`document.getElementById("pub-result").textContent.includes("resource.verb")`, 5*time.Second)

	png := p.screenshot()
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	if *updateScreenshot {
		dst := filepath.Join("..", "docs", "img", "demo.png")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", dst, len(png))
	}

	// Another channel of the demo tenant.
	other := "demo:" + cfg.Tenant + ":other"
	p.must(fmt.Sprintf(`document.getElementById("channels").value = %q; document.querySelector("#subscribe button").click(); 1`,
		cfg.Channel+"\n"+other), nil)
	p.waitFor(hasRow("stream-open", other), 10*time.Second)
	p.waitFor(`document.getElementById("status").className === "open"`, 10*time.Second)
	publish(t, base, cfg.PublishKey, other, "board.moved", map[string]any{"text": "on the other channel"})
	p.waitFor(hasRow("board.moved", "on the other channel"), 10*time.Second)

	// Reload: leave the page, publish while it is away, come back.
	p.navigate("about:blank")
	publish(t, base, cfg.PublishKey, cfg.Channel, "scan.progress", map[string]any{"text": "while away 1"})
	publish(t, base, cfg.PublishKey, other, "board.moved", map[string]any{"text": "while away 2"})
	p.navigate(base + "/")
	p.waitFor(hasRow("board.moved", "while away 2"), 10*time.Second)
	p.waitFor(`document.getElementById("status").className === "open"`, 10*time.Second)
	publish(t, base, cfg.PublishKey, cfg.Channel, "scan.progress", map[string]any{"text": "after the reload"})
	p.waitFor(hasRow("scan.progress", "after the reload"), 10*time.Second)
	time.Sleep(300 * time.Millisecond) // let a duplicate show, if any
	rs := rows(p)
	for _, text := range []string{`"first"`, "second", "typed in the console", "on the other channel", "while away 1", "while away 2", "after the reload"} {
		if n := countAny(rs, text); n != 1 {
			t.Errorf("%q shown %d times after the reload, want once:\n%+v", text, n, rs)
		}
	}
	var resumed bool
	for _, r := range rs {
		if r.Type == "stream-open" && !r.Restored && strings.Contains(r.Note, "resumed") {
			resumed = true
		}
		if r.Type == "stream-reset" {
			t.Errorf("stream-reset after a reload: %+v", r)
		}
	}
	if !resumed {
		t.Errorf("the stream after the reload does not say it resumed:\n%+v", rs)
	}

	// A channel of another tenant is refused, and the console says so.
	p.must(fmt.Sprintf(`document.getElementById("channels").value = %q; document.querySelector("#subscribe button").click(); 1`,
		"demo:"+uuid.NewString()+":x"), nil)
	if err := waitUntil(p, `document.getElementById("status").textContent === "refused: foreign_tenant"`, 10*time.Second); err != nil {
		t.Fatalf("%v\nstatus %q\nrows %+v", err, evalString(p, `document.getElementById("status").textContent`), rows(p))
	}
	p.must(fmt.Sprintf(`document.getElementById("channels").value = %q; document.querySelector("#subscribe button").click(); 1`, cfg.Channel), nil)
	p.waitFor(`document.getElementById("status").className === "open"`, 10*time.Second)

	// A restart with another secret: the page's token is no longer valid,
	// and the console says to reload; a reload then works.
	srv.stop()
	srv2 := startSluice(t, []string{"--dev"}, "SLUICE_ADDR="+addr, "XDG_CONFIG_HOME="+t.TempDir())
	p.waitFor(`document.getElementById("status").textContent === "token no longer valid: reload"`, 30*time.Second)
	p.navigate(srv2.base + "/")
	p.waitFor(`document.getElementById("status").className === "open"`, 15*time.Second)
}

// countAny counts the rows of any type whose data holds text.
func countAny(rs []row, text string) int {
	n := 0
	for _, r := range rs {
		if r.Kind == "event" && strings.Contains(r.Data, text) {
			n++
		}
	}
	return n
}

// TestDevConsoleLoopbackOnly: the console, which holds credentials, is not
// served to another Host (DNS rebinding).
func TestDevConsoleLoopbackOnly(t *testing.T) {
	srv := startSluice(t, []string{"--dev"}, "SLUICE_ADDR=127.0.0.1:0", "XDG_CONFIG_HOME="+t.TempDir())
	req, _ := http.NewRequest(http.MethodGet, srv.base+"/", nil)
	req.Host = "attacker.example:8080"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("console served to Host attacker.example: %s", resp.Status)
	}
}

// TestCORSHint: when the gateway refuses the page's origin, sluice.js says
// to add it to SLUICE_ALLOW_ORIGINS instead of only "Failed to fetch".
func TestCORSHint(t *testing.T) {
	needChromium(t)
	a := newApp(t)
	srv := startSluice(t, nil, gatewayEnv("http://elsewhere.example", "SLUICE_ADDR=127.0.0.1:0")...)
	p := newPage(t)
	p.navigate(a.srv.URL + "/")
	for _, ticket := range []bool{true, false} {
		tenant := uuid.NewString()
		i := p.subscribe(subOptions{Sluice: srv.base, Channels: []string{chanOf(tenant, "cors")}, Tenant: tenant, Ticket: ticket})
		st := p.waitState(i, 15*time.Second, "an error", func(s subState) bool { return len(s.Errors) > 0 })
		e := st.Errors[0]
		if e.Condition != "connect-failed" || !strings.Contains(e.Text, "SLUICE_ALLOW_ORIGINS") || !strings.Contains(e.Text, a.srv.URL) {
			t.Errorf("ticket=%v: %+v, want connect-failed naming SLUICE_ALLOW_ORIGINS and %s", ticket, e, a.srv.URL)
		}
		p.must(fmt.Sprintf("subs[%d].sub.close(), 1", i), nil)
	}
}

// waitUntil polls expr until it is truthy, or returns an error after timeout.
func waitUntil(p *page, expr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		if err := p.eval("!!("+expr+")", &ok); err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", timeout, expr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func evalString(p *page, expr string) string {
	var s string
	_ = p.eval(expr, &s)
	return s
}
