package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a redis-server process of a test's own: its own port and
// directory, no persistence, killed at cleanup.
type Server struct {
	tb   testing.TB
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartServer starts redis-server on a free port with the extra arguments
// args and waits until it answers PING. It skips tb when redis-server is not
// installed.
func StartServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Skip("redis-server is not on PATH; this test runs a Redis of its own")
	}
	s := &Server{tb: tb, Port: FreePort(tb), dir: tb.TempDir(), args: args}
	tb.Cleanup(s.Kill)
	s.Start()
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Start starts the server (again, empty) and waits until it answers PING.
func (s *Server) Start() {
	s.tb.Helper()
	s.done = make(chan struct{})
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("redis-server: %v", err)
	}
	done := s.done
	go func() { _ = s.cmd.Wait(); close(done) }()
	WaitPong(s.tb, s.Addr())
}

// Kill kills the server with SIGKILL, by its PID, and waits for it to exit.
// Killing a stopped server does nothing.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.tb.Errorf("redis-server (pid %d) did not exit", s.cmd.Process.Pid)
	}
}

// WaitPong waits up to 10 s until addr answers PING (with PONG, or NOAUTH
// when it requires a password).
func WaitPong(tb testing.TB, addr string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(addr) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redis-server on %s does not answer PING", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("PING\r\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	// A server with a password answers, but not PONG.
	return line == "+PONG\r\n" || strings.HasPrefix(line, "-NOAUTH")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Cluster is a Redis Cluster of masters without replicas, of a test's own.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n (at least 3) redis-server processes in cluster mode,
// joins them with redis-cli --cluster create and waits until the cluster
// reports cluster_state:ok on every node. It skips tb when redis-server or
// redis-cli is not installed.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Skip("redis-cli is not on PATH; this test creates a Redis Cluster of its own")
	}
	c := &Cluster{}
	addrs := make([]string, n)
	for i := range n {
		// Each node's cluster config file lives in its own directory.
		s := StartServer(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		for {
			out, _ := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster node %s: not ok after 20 s:\n%s", a, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL is the cluster's URL in valkey-go's form: the first node, and the others
// as addr parameters.
func (c *Cluster) URL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redis://%s", c.Nodes[0].Addr())
	for i, s := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		fmt.Fprintf(&b, "%saddr=%s", sep, s.Addr())
	}
	return b.String()
}

// Dir is the directory of the server's files.
func (s *Server) Dir() string { return s.dir }
