//go:build unix

package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/syncbuf"
	"github.com/sluicehq/sluice/internal/testutil"
)

// tlsFiles writes a CA and a server certificate for 127.0.0.1 signed by it
// into dir and returns their paths.
func tlsFiles(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey := newKey()
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "PRIVATE KEY", keyDER)
}

// startTLSRedis starts a redis-server that listens only with TLS and waits
// until it answers PING over TLS. It skips t when this redis-server was
// built without TLS.
func startTLSRedis(t *testing.T, ca, cert, key string) int {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH; this test runs a Redis of its own")
	}
	port := freePort(t)
	out := &syncbuf.Buffer{}
	cmd := exec.Command("redis-server", "--port", "0", "--bind", "127.0.0.1", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
			return
		default:
		}
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("redis-server (pid %d) did not exit", cmd.Process.Pid)
		}
	})
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pem)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			if s := out.String(); strings.Contains(strings.ToLower(s), "tls") {
				t.Skipf("this redis-server does not support TLS:\n%s", s)
			}
			t.Fatalf("redis-server exited: %s", out.String())
		default:
		}
		if tlsPing(port, pool) {
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server with TLS on %d does not answer PING:\n%s", port, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tlsPing(port int, pool *x509.CertPool) bool {
	d := &net.Dialer{Timeout: time.Second}
	c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{RootCAs: pool})
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("PING\r\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line == "+PONG\r\n"
}

// The Redis broker over TLS (rediss://, protocol.md §9) against a real TLS
// redis-server, trusting its CA through SSL_CERT_FILE: a stream opens, a
// publish reaches it. Without the CA the instance is not ready and says why.
func TestRedisTLS(t *testing.T) {
	redisURL(t) // the test runs with the others
	dir := t.TempDir()
	ca, cert, key := tlsFiles(t, dir)
	port := startTLSRedis(t, ca, cert, key)
	u := "rediss://127.0.0.1:" + strconv.Itoa(port) + "/0"

	p := privateDeployment(t, u, map[string]string{"SSL_CERT_FILE": ca}).start("tls")
	testutil.Eventually(t, 10*time.Second, "/readyz answers 200 over TLS", func() bool {
		st, _, _ := p.get("/readyz")
		return st == http.StatusOK
	})
	ch := newChannel("tls")
	s := p.open("stream over TLS", "", ch)
	s.expectOpen()
	p.mustPublish(ch, "tls.checked", map[string]int{"n": 1})
	if got := seqs(t, s.events(1, 10*time.Second)); got[0] != 1 {
		t.Fatalf("received %v, want [1]", got)
	}

	// An instance that does not trust the server's certificate says why:
	// it refuses to start, or starts unready, naming the certificate.
	other := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncbuf.Buffer{}
	cmd := exec.Command(testutil.SluiceBinary(t))
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+other, "SLUICE_ADDR=127.0.0.1:0",
		"SLUICE_JWT_SECRET="+jwtSecret, "SLUICE_PUBLISH_KEYS="+publishKey, "SLUICE_BROKER=redis", "SLUICE_REDIS_URL="+u)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	testutil.Eventually(t, 15*time.Second, "the untrusting instance names the certificate error", func() bool {
		return strings.Contains(out.String(), "certificate")
	})
	t.Logf("without the CA: %s", strings.TrimSpace(out.String()))
}
