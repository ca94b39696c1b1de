package publisher_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// block is a fenced code block of a Markdown file and the HTML comment
// right above it, if any.
type block struct {
	lang, code, marker string
	line               int
}

func codeBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out    []block
		cur    *block
		marker string
		n      int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.code += line + "\n"
		case strings.HasPrefix(line, "```"):
			cur = &block{lang: strings.Fields(line[3:] + " ")[0], marker: marker, line: n}
		case strings.HasPrefix(line, "<!--") && strings.HasSuffix(line, "-->"):
			marker = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "<!--"), "-->"))
			continue
		}
		if strings.TrimSpace(line) != "" {
			marker = ""
		}
	}
	if cur != nil {
		t.Fatalf("%s: unterminated code block at line %d", path, cur.line)
	}
	return out
}

// interpreter returns the command that runs a snippet of lang, or "" when
// its interpreter is absent.
func interpreter(lang string) []string {
	var cmd []string
	switch lang {
	case "sh":
		cmd = []string{"bash", "-eo", "pipefail", "-s"}
	case "python":
		cmd = []string{"python3", "-"}
	case "js":
		cmd = []string{"node", "--input-type=module"}
	case "go":
		cmd = []string{"go", "run"}
	default:
		return nil
	}
	if _, err := exec.LookPath(cmd[0]); err != nil {
		return nil
	}
	if cmd[0] == "bash" {
		if _, err := exec.LookPath("curl"); err != nil {
			return nil
		}
	}
	return cmd
}

// TestPublishingDocSnippets runs every snippet of docs/publishing.md against
// a real gateway and checks the events it publishes arrive.
func TestPublishingDocSnippets(t *testing.T) {
	blocks := codeBlocks(t, "../docs/publishing.md")
	e := newEnv(t, nil)
	ci := os.Getenv("CI") == "true"
	var prevOut []byte
	for i, b := range blocks {
		if b.lang == "json" {
			if b.marker != "output of the previous snippet" {
				t.Errorf("line %d: a json block must be the output of the previous snippet", b.line)
				continue
			}
			var want, got any
			if err := json.Unmarshal([]byte(b.code), &want); err != nil {
				t.Fatalf("line %d: %v", b.line, err)
			}
			if err := json.Unmarshal(prevOut, &got); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("line %d: the snippet printed %s, the page shows %s", b.line, prevOut, b.code)
			}
			continue
		}
		fields := strings.Fields(b.marker)
		if len(fields) == 0 || fields[0] != "snippet" {
			t.Errorf("line %d: %s block without a <!-- snippet events=N --> marker", b.line, b.lang)
			continue
		}
		events, fails := -1, false
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(f, "events="); ok {
				events, _ = strconv.Atoi(v)
			}
			fails = fails || f == "fails"
		}
		t.Run(b.lang+"-line-"+strconv.Itoa(b.line), func(t *testing.T) {
			cmd := interpreter(b.lang)
			if cmd == nil {
				if ci {
					t.Fatalf("no interpreter for %s in CI", b.lang)
				}
				t.Skipf("no interpreter for %s", b.lang)
			}
			ch := "docs:" + tenant + ":snippet-" + strconv.Itoa(i)
			evs := e.subscribe(ch)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var c *exec.Cmd
			if b.lang == "go" {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				// Inside the module, so that the snippet's imports resolve.
				dir, err := os.MkdirTemp("testdata", "snippet-")
				if err != nil {
					t.Fatal(err)
				}
				defer os.RemoveAll(dir)
				if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(b.code), 0o600); err != nil {
					t.Fatal(err)
				}
				c = exec.CommandContext(ctx, cmd[0], append(cmd[1:], "./"+dir)...)
			} else {
				c = exec.CommandContext(ctx, cmd[0], cmd[1:]...)
				c.Stdin = strings.NewReader(b.code)
			}
			c.Env = append(os.Environ(), "SLUICE_URL="+e.srv.URL, "SLUICE_PUBLISH_KEY="+publishKey, "CHANNEL="+ch)
			var stderr bytes.Buffer
			c.Stderr = &stderr
			out, err := c.Output()
			prevOut = out
			if fails != (err != nil) {
				t.Fatalf("exit: %v (fails=%v)\nstdout: %s\nstderr: %s", err, fails, out, &stderr)
			}
			if !fails && len(bytes.TrimSpace(out)) == 0 {
				t.Fatalf("the snippet printed nothing; stderr: %s", &stderr)
			}
			if events < 0 {
				t.Fatal("marker without events=N")
			}
			collect(t, evs, events)
			quiet(t, evs)
		})
	}
	if err := os.Remove("testdata"); err != nil && !os.IsNotExist(err) {
		t.Logf("testdata: %v", err)
	}
}
