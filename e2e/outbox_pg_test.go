package e2e

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBin is where Debian puts PostgreSQL 15's programs.
const pgBin = "/usr/lib/postgresql/15/bin"

// pgServer is a PostgreSQL of the test's own (not the machine's shared
// one), so that it can be crashed and restarted.
type pgServer struct {
	t    *testing.T
	dir  string
	port int
	url  string
	cred *syscall.Credential // the postgres user's, when the tests run as root
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

// startPostgres initialises a cluster in a temporary directory and starts
// it on a free port, skipping when initdb is missing. It is stopped, by its
// PID, at cleanup.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		t.Skip("PostgreSQL's initdb is not at " + pgBin + ": install postgresql-15 to run the restart test")
	}
	dir, err := os.MkdirTemp("", "sluice-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &pgServer{t: t, dir: dir, port: freePort(t)}
	if os.Geteuid() == 0 { // initdb refuses root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root without a postgres user: initdb refuses root")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(pgBin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.url = "postgres://postgres@127.0.0.1:" + strconv.Itoa(s.port) + "/postgres?sslmode=disable"
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start starts the server on its data directory and waits until it
// accepts connections.
func (s *pgServer) start() {
	s.t.Helper()
	s.logs = &syncBuffer{}
	s.cmd = exec.Command(filepath.Join(pgBin, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port),
		"-k", s.dir, "-c", "listen_addresses=127.0.0.1", "-c", "shared_buffers=16MB", "-c", "max_connections=30")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("postgres: %v", err)
	}
	s.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.url)
		cancel()
		if err == nil {
			c.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("postgres did not accept connections within 20 s: %v\n%s", err, s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crash stops the server the way a crash would (immediate shutdown: no
// checkpoint, recovery at the next start) and waits for it to exit.
func (s *pgServer) crash() {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		s.t.Fatalf("postgres (pid %d) did not stop", s.cmd.Process.Pid)
	}
}

func (s *pgServer) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
