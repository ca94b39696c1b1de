package testutil

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/syncbuf"
)

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// SluiceBinary builds cmd/sluice once per test binary (with the module's
// VCS stamps, as go build adds them by default) and returns its path.
// TestMain should call RemoveSluiceBinary after m.Run.
func SluiceBinary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "sluice-test-bin-"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "sluice")
		out, err := exec.Command("go", "build", "-o", binary.path, "github.com/sluicehq/sluice/cmd/sluice").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build ./cmd/sluice: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// RemoveSluiceBinary removes what SluiceBinary built, if anything.
func RemoveSluiceBinary() {
	if binary.dir != "" {
		_ = os.RemoveAll(binary.dir)
	}
}

// SluiceConfig says how StartSluice runs the binary.
type SluiceConfig struct {
	// Args are the command's arguments.
	Args []string
	// Env is the process's whole environment (KEY=value). Nil means the
	// test's own environment without its SLUICE_* variables. The log level
	// (SLUICE_LOG_LEVEL) must be info or debug: the address is read from
	// the "listening" line.
	Env []string
	// Addr is the listen address (SLUICE_ADDR). Empty means the one Env or
	// Args set, else 127.0.0.1:0: a port the process picks and reports. A
	// restart on the same port passes the address of the process it
	// replaces.
	Addr string
	// Ready, if not nil, must also hold before StartSluice returns (e.g. a
	// --dev banner printed in full). It is polled.
	Ready func(*Sluice) bool
	// Timeout bounds the start; zero means 20 s.
	Timeout time.Duration
}

// Sluice is a sluice process started by StartSluice. It is killed, if
// still running, when the test ends.
type Sluice struct {
	// Addr is the host:port it listens on, URL "http://"+Addr.
	Addr, URL string
	// Cmd is the process's command (Cmd.Path, Cmd.Env to start it again).
	Cmd *exec.Cmd
	// Output collects its stdout and stderr.
	Output *syncbuf.Buffer
	// Done is closed when the process has exited.
	Done <-chan struct{}
}

// listening matches the line the server logs once it listens, in the text
// or the JSON log format.
var listening = regexp.MustCompile(`msg=listening addr=(\S+)|"msg":"listening","addr":"([^"]+)"`)

// StartSluice runs the built binary (SluiceBinary) as cfg says, on port 0
// unless an address is set, and waits until it reports its address, answers
// GET /healthz with 200 and cfg.Ready holds. It fails the test if the
// process exits meanwhile or is not ready within cfg.Timeout.
func StartSluice(t testing.TB, cfg SluiceConfig) *Sluice {
	t.Helper()
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	env := cfg.Env
	if env == nil {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "SLUICE_") {
				env = append(env, kv)
			}
		}
	}
	// The last of a variable set twice wins: a default first, Addr last.
	if cfg.Addr == "" {
		env = append([]string{"SLUICE_ADDR=127.0.0.1:0"}, env...)
	} else {
		env = append(env[:len(env):len(env)], "SLUICE_ADDR="+cfg.Addr)
	}
	cmd := exec.Command(SluiceBinary(t), cfg.Args...)
	cmd.Env = env
	done := make(chan struct{})
	s := &Sluice{Cmd: cmd, Output: &syncbuf.Buffer{}, Done: done}
	cmd.Stdout, cmd.Stderr = s.Output, s.Output
	if err := cmd.Start(); err != nil {
		t.Fatalf("sluice: start: %v", err)
	}
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(s.Stop)
	if err := s.waitReady(cfg); err != nil {
		t.Fatalf("sluice %v: %v\noutput:\n%s", cfg.Args, err, s.Output)
	}
	return s
}

func (s *Sluice) waitReady(cfg SluiceConfig) error {
	deadline := time.Now().Add(cfg.Timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		if !s.Running() {
			return fmt.Errorf("exited during start (%v)", s.Cmd.ProcessState)
		}
		if s.Addr == "" {
			if m := listening.FindStringSubmatch(s.Output.String()); m != nil {
				s.Addr = m[1] + m[2]
				s.URL = "http://" + s.Addr
			}
		}
		if s.Addr != "" && healthy(s.URL) && (cfg.Ready == nil || cfg.Ready(s)) {
			return nil
		}
		if time.Now().After(deadline) {
			if s.Addr == "" {
				return errors.New("no \"listening\" line within " + cfg.Timeout.String() + " (is SLUICE_LOG_LEVEL info or debug?)")
			}
			return fmt.Errorf("not ready within %v", cfg.Timeout)
		}
		time.Sleep(wait)
	}
}

var healthClient = &http.Client{Timeout: 5 * time.Second}

func healthy(url string) bool {
	resp, err := healthClient.Get(url + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Running reports whether the process has not exited.
func (s *Sluice) Running() bool {
	select {
	case <-s.Done:
		return false
	default:
		return true
	}
}

// Stop kills the process (SIGKILL, by its PID) if it still runs and waits
// for it to exit. It may be called more than once.
func (s *Sluice) Stop() {
	if s.Running() {
		_ = s.Cmd.Process.Kill()
	}
	<-s.Done
}
