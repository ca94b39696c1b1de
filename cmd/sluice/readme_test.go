package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeCommands returns the commands of the README's curl walk-through, a
// line each (continuations joined, comments dropped).
func readmeCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## A walk through with curl")
	if i < 0 {
		t.Fatal("README has no walk-through")
	}
	s = s[i:]
	s = s[strings.Index(s, "```sh\n")+6:]
	s = s[:strings.Index(s, "```")]
	var cmds []string
	cur := ""
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if c, ok := strings.CutSuffix(line, `\`); ok {
			cur += c
			continue
		}
		if strings.Count(cur+line, "'")%2 == 1 {
			cur += line + "\n" // a quoted JSON body going on over lines
			continue
		}
		cmds = append(cmds, cur+line)
		cur = ""
	}
	return cmds
}

// TestREADMEWalkthrough runs the README's curl walk-through, as written,
// against `sluice --dev` in a shell holding its export block: the subscriber
// sees what is published, the resume from an id the subscriber printed
// replays it, a ticket is issued, and the token command prints a token that
// opens a stream.
func TestREADMEWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	cmds := readmeCommands(t)
	if len(cmds) != 7 {
		t.Fatalf("%d commands in the walk-through, want 7:\n%s", len(cmds), strings.Join(cmds, "\n"))
	}
	dir := t.TempDir()
	srv := start(t, env(t, dir), "--dev")
	var prelude []string
	for _, line := range strings.Split(srv.Output.String(), "\n") {
		if strings.HasPrefix(line, "export ") {
			prelude = append(prelude, line)
		}
	}
	ex := exports(t, srv.Output.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sh := func(cmd string) *exec.Cmd {
		cmd = strings.ReplaceAll(cmd, "go run ./cmd/sluice", build(t))
		c := exec.CommandContext(ctx, "sh", "-c", strings.Join(prelude, "\n")+"\n"+cmd+"\n")
		c.Env = env(t, dir)
		return c
	}
	// stream runs cmd and returns its lines as they come.
	stream := func(cmd string) <-chan string {
		c := sh(cmd + " --no-progress-meter")
		out, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		lines := make(chan string, 64)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		return lines
	}
	until := func(lines <-chan string, re string) []string {
		t.Helper()
		rx := regexp.MustCompile(re)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %s", re)
				}
				if m := rx.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-ctx.Done():
				t.Fatalf("no line %s", re)
			}
		}
	}
	output := func(cmd string) string {
		t.Helper()
		out, err := sh(cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return string(out)
	}

	sub := stream(cmds[0])
	openID := until(sub, `^id: (\S+)$`)[1]
	until(sub, `^event: stream-open$`)
	for _, i := range []int{1, 2} {
		if out := output(cmds[i]); !strings.Contains(out, `"ids":[`) {
			t.Fatalf("publish %q: %s", cmds[i], out)
		}
	}
	for _, want := range []string{`data: {"text":"hello"}`, "data: 1", "data: 2"} {
		until(sub, "^"+regexp.QuoteMeta(want)+"$")
	}

	if !strings.HasPrefix(cmds[3], "LAST_ID=") {
		t.Fatalf("command 4 should set LAST_ID: %q", cmds[3])
	}
	res := stream("LAST_ID=" + openID + "\n" + cmds[4])
	until(res, `^event: stream-open$`)
	until(res, `^data: \{"text":"hello"\}$`)
	until(res, `^data: 2$`)

	if out := output(cmds[5]); !strings.Contains(out, `"ticket":"`) {
		t.Fatalf("ticket: %s", out)
	}
	tok := strings.TrimSpace(output(cmds[6] + " 2>/dev/null"))
	if code, _ := openStream(t, srv.URL, ex["CHANNEL"], "Bearer "+tok); code != 200 {
		t.Fatalf("the token command's token: %d", code)
	}
	if claims := payload(t, tok); claims["sub"] != "u2" || claims["role"] != "admin" || claims["exp"].(float64)-claims["iat"].(float64) != 300 {
		t.Fatalf("the token command's claims: %v", claims)
	}
}
