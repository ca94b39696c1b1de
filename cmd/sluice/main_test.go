package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles the command into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDevCurlsWork runs `sluice --dev`, pastes the two printed curl commands
// into a shell as a newcomer would, and checks that the subscriber receives
// what the publisher sent; then SIGTERM stops the process with status 0.
func TestDevCurlsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	bin := build(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--dev", "--addr", addr)
	cmd.Env = append(os.Environ(), "SLUICE_LOG_LEVEL=warn")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var subscribe, publish string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var pending string
	for sc.Scan() && (subscribe == "" || publish == "") {
		line := strings.TrimSpace(sc.Text())
		switch {
		case pending != "":
			publish = pending + " " + line
			pending = ""
		case strings.HasPrefix(line, "curl -N"):
			subscribe = line
		case strings.HasPrefix(line, "curl -H") && strings.HasSuffix(line, `\`):
			pending = strings.TrimSuffix(line, `\`)
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if subscribe == "" || publish == "" {
		t.Fatal("the --dev banner does not print both curl commands")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, "sh", "-c", subscribe+" --no-progress-meter")
	subOut, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
	lines := bufio.NewScanner(subOut)
	for lines.Scan() && lines.Text() != "event: stream-open" {
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", publish+" --no-progress-meter").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ids"`) {
		t.Fatalf("publish curl: %v %s", err, out)
	}
	got := false
	for lines.Scan() {
		if lines.Text() == `data: {"text":"hello"}` {
			got = true
			break
		}
	}
	if !got {
		t.Fatal("the subscribe curl did not receive the published event")
	}

	// The demo page is served.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("demo page: %v", err)
	}
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15 s of SIGTERM")
	}
}

func TestBadConfigExits(t *testing.T) {
	bin := build(t)
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "SLUICE_JWT_SECRET"},
		{[]string{"SLUICE_JWT_SECRET=x", "SLUICE_KEEPALIVE=often"}, "SLUICE_KEEPALIVE"},
	} {
		cmd := exec.Command(bin)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Fatalf("%v: err %v, output %q", tc.env, err, out)
		}
	}
}
