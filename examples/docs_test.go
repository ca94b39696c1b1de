// Package examples_test checks docs/guide.md: every code block is either a
// verbatim excerpt of a tested file or run here.
package examples_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/server"
)

// block is a fenced code block of the guide and the HTML comment right
// above it.
type block struct {
	lang, code, marker string
	line               int
}

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveSluiceBinary()
	os.Exit(code)
}

func guideBlocks(t *testing.T) []block { return markdownBlocks(t, "../docs/guide.md") }

// markdownBlocks returns the fenced code blocks of the Markdown file at path.
func markdownBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out    []block
		cur    *block
		indent string
		marker string
		n      int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.code += strings.TrimPrefix(line, indent) + "\n"
		case strings.HasPrefix(trimmed, "```"):
			indent = line[:len(line)-len(trimmed)]
			cur = &block{lang: strings.TrimSpace(trimmed[3:]), marker: marker, line: n}
		case strings.HasPrefix(trimmed, "<!--") && strings.HasSuffix(trimmed, "-->"):
			marker = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(trimmed, "<!--"), "-->"))
			continue
		}
		if strings.TrimSpace(line) != "" {
			marker = ""
		}
	}
	if cur != nil {
		t.Fatalf("unterminated code block at line %d", cur.line)
	}
	return out
}

// excerptOf reports whether code appears in src verbatim, or with every
// non-empty line indented by the same number of tabs (an excerpt of a
// function body shown without its indentation).
func excerptOf(src, code string) bool {
	for tabs := range 4 {
		lines := strings.SplitAfter(code, "\n")
		for i, l := range lines {
			if strings.TrimSpace(l) != "" {
				lines[i] = strings.Repeat("\t", tabs) + l
			}
		}
		if strings.Contains(src, strings.Join(lines, "")) {
			return true
		}
	}
	return false
}

// TestReadmeExcerpts checks that the README's Go code is excerpts of
// compiled, tested files: every go block is marked "from <file>" and
// appears there.
func TestReadmeExcerpts(t *testing.T) {
	n := 0
	for _, b := range markdownBlocks(t, "../README.md") {
		if b.lang != "go" {
			continue
		}
		n++
		file, ok := strings.CutPrefix(b.marker, "from ")
		if !ok {
			t.Errorf("README.md line %d: a go block without <!-- from file -->", b.line)
			continue
		}
		src, err := os.ReadFile(filepath.Join("..", file))
		if err != nil {
			t.Errorf("README.md line %d: %v", b.line, err)
			continue
		}
		if !excerptOf(string(src), b.code) {
			t.Errorf("README.md line %d: the block is not an excerpt of %s:\n%s", b.line, file, b.code)
		}
	}
	if n == 0 {
		t.Fatal("no go block found in README.md")
	}
}

// TestGuideExcerpts checks that every block marked "from <file>" appears
// verbatim in that file, and that every other block is run by
// TestGuideCommands (or is the diagram).
func TestGuideExcerpts(t *testing.T) {
	blocks := guideBlocks(t)
	if len(blocks) < 10 {
		t.Fatalf("only %d code blocks found", len(blocks))
	}
	for _, b := range blocks {
		switch {
		case strings.HasPrefix(b.marker, "from "):
			file := strings.TrimPrefix(b.marker, "from ")
			src, err := os.ReadFile(filepath.Join("..", file))
			if err != nil {
				t.Errorf("line %d: %v", b.line, err)
				continue
			}
			if !excerptOf(string(src), b.code) {
				t.Errorf("line %d: the %s block is not a verbatim excerpt of %s:\n%s", b.line, b.lang, file, b.code)
			}
		case strings.HasPrefix(b.marker, "run: "), strings.HasPrefix(b.marker, "output: "):
		case b.lang == "mermaid":
		default:
			t.Errorf("line %d: %s block is neither an excerpt (<!-- from file -->) nor run (<!-- run: name -->)", b.line, b.lang)
		}
	}
}

// running is a command whose output is read line by line.
type running struct {
	cmd   *exec.Cmd
	lines chan string
	all   strings.Builder
}

func start(t *testing.T, env []string, name string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), env...)
	c.Stderr = io.Discard // curl's progress meter
	c.WaitDelay = 5 * time.Second
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: c, lines: make(chan string, 1024)}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = c.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	return r
}

// until reads lines until one matches re and returns its submatches.
func (r *running) until(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("output ended before %q; got:\n%s", re, r.all.String())
			}
			r.all.WriteString(line + "\n")
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q within 60s; got:\n%s", re, r.all.String())
		}
	}
}

// shell runs a one-command snippet with bash, exec'ing the command so that
// stopping the process stops curl.
func shell(t *testing.T, env []string, code string) *running {
	t.Helper()
	return start(t, env, "bash", "-c", "exec "+code)
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
}

// TestGuideCommands runs the guide's shell blocks in order against
// go run ./cmd/sluice --dev, as a reader would.
func TestGuideCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/sluice")
	}
	need(t, "bash", "curl", "go")
	run := map[string]string{}
	var output string
	for _, b := range guideBlocks(t) {
		if name, ok := strings.CutPrefix(b.marker, "run: "); ok {
			run[name] = strings.TrimSuffix(b.code, "\n")
		}
		if b.marker == "output: subscribe" {
			output = b.code
		}
	}
	for _, name := range []string{"dev", "subscribe", "publish", "resume", "ticket", "subscribe-ticket", "django-config"} {
		if run[name] == "" {
			t.Fatalf("the guide has no <!-- run: %s --> block", name)
		}
	}

	// dev: build the command the guide runs, and run it.
	const devCmd = "go run ./cmd/sluice --dev"
	if run["dev"] != devCmd {
		t.Fatalf("dev block %q, want %q", run["dev"], devCmd)
	}
	bin := testutil.SluiceBinary(t)
	dev := start(t, []string{"SLUICE_ADDR=127.0.0.1:0", "SLUICE_LOG_LEVEL=error", "XDG_CONFIG_HOME=" + t.TempDir()}, bin, "--dev")
	// The export block --dev prints: the names every doc uses.
	base := dev.until(t, `^export SLUICE_URL=(\S+)$`)[1]
	tok := dev.until(t, `^export TOKEN=(\S+)$`)[1]
	pub := dev.until(t, `^export SLUICE_PUBLISH_KEY=(\S+)$`)[1]
	tenant := dev.until(t, `^export TENANT=(\S+)$`)[1]
	ch := dev.until(t, `^export CHANNEL=(\S+)$`)[1]
	env := []string{"SLUICE_URL=" + base, "TOKEN=" + tok, "SLUICE_PUBLISH_KEY=" + pub, "TENANT=" + tenant, "CHANNEL=" + ch}

	// subscribe, then publish; the subscriber prints what the guide shows.
	sub := shell(t, env, run["subscribe"])
	openID := sub.until(t, `^id: (\S+)$`)[1]
	sub.until(t, `^event: stream-open$`)
	p := shell(t, env, run["publish"])
	p.until(t, `"ids":\["[^"]+"\]`)
	for _, want := range strings.Split(strings.TrimSpace(output), "\n") {
		if want == "id: …" {
			sub.until(t, `^id: \S+$`)
			continue
		}
		sub.until(t, "^"+regexp.QuoteMeta(want)+"$")
	}

	// resume from the stream-open id: the event is replayed.
	res := shell(t, append(env, "LAST_ID="+openID), run["resume"])
	res.until(t, `^event: stream-open$`)
	res.until(t, `^event: demo\.said$`)

	// ticket, then a stream with it.
	tk := shell(t, env, run["ticket"])
	line := tk.until(t, `^\{.*"ticket".*\}$`)[0]
	var ticket struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(line), &ticket); err != nil || ticket.Ticket == "" {
		t.Fatalf("ticket reply %q: %v", line, err)
	}
	st := shell(t, append(env, "TICKET="+ticket.Ticket), run["subscribe-ticket"])
	st.until(t, `^event: stream-open$`)

	// django-config: the variables make a valid configuration.
	fields := strings.Fields(run["django-config"])
	vars := map[string]string{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "SLUICE_") {
			vars[k] = v
		}
	}
	if !strings.HasSuffix(run["django-config"], " go run ./cmd/sluice") {
		t.Fatalf("django-config block %q", run["django-config"])
	}
	cfg, err := server.LoadConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatalf("django-config: %v", err)
	}
	if cfg.Broker != "redis" || cfg.DjangoIngest != "events_channel" || cfg.RedisURL == "" {
		t.Fatalf("django-config gives %+v", cfg)
	}
}
