package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/auth/jwtauth"
	"github.com/sluicehq/sluice/internal/testutil"
)

const (
	testSecret = "test-secret-0123456789abcdef0123456789"
	testTenant = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveSluiceBinary()
	os.Exit(code)
}

// build returns the command, built once per test run (testutil.SluiceBinary).
func build(t *testing.T) string { return testutil.SluiceBinary(t) }

// env is a clean environment (no SLUICE_* of the caller) with a config
// directory of the test's own, plus extra.
func env(t *testing.T, configDir string, extra ...string) []string {
	t.Helper()
	if configDir == "" {
		configDir = t.TempDir()
	}
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + configDir, "XDG_CONFIG_HOME=" + configDir, "SLUICE_LOG_LEVEL=warn"}, extra...)
}

// run runs the binary to completion and returns stdout, stderr and the exit
// status.
func run(t *testing.T, environ []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(build(t), args...)
	cmd.Env = environ
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// start runs the gateway on a port of its choosing and waits for /healthz
// (and, with --dev, for the end of the banner). It logs at info: the
// launcher reads the address from the "listening" line.
func start(t *testing.T, environ []string, args ...string) *testutil.Sluice {
	t.Helper()
	dev := slices.Contains(args, "--dev")
	return testutil.StartSluice(t, testutil.SluiceConfig{
		Args:  args,
		Env:   append(environ[:len(environ):len(environ)], "SLUICE_LOG_LEVEL=info"),
		Ready: func(s *testutil.Sluice) bool { return !dev || strings.Contains(s.Output.String(), "export CHANNEL=") },
	})
}

// exports reads the export block of a --dev banner.
func exports(t *testing.T, banner string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^export ([A-Z_]+)=(\S+)$`).FindAllStringSubmatch(banner, -1) {
		got[m[1]] = m[2]
	}
	for _, name := range []string{"SLUICE_URL", "TOKEN", "SLUICE_PUBLISH_KEY", "TENANT", "CHANNEL"} {
		if got[name] == "" {
			t.Fatalf("the --dev banner has no export %s= line:\n%s", name, banner)
		}
	}
	return got
}

// openStream opens GET /events with the header auth and reads until
// stream-open; it returns the status and, on success, the stream-open id.
func openStream(t *testing.T, base, channel, auth string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?channel="+channel, nil)
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Logf("GET /events: %d %s", resp.StatusCode, b)
		return resp.StatusCode, ""
	}
	sc := bufio.NewScanner(resp.Body)
	id := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
		}
		if line == "event: stream-open" {
			return resp.StatusCode, id
		}
	}
	t.Fatalf("no stream-open: %v", sc.Err())
	return 0, ""
}

// TestDevCurlsWork runs `sluice --dev`, pastes its export block and the two
// printed curl commands into a shell as a newcomer would, and checks that the
// subscriber receives what the publisher sent; then SIGTERM stops the process
// with status 0.
func TestDevCurlsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	srv := start(t, env(t, ""), "--dev")
	banner := srv.Output.String()
	var block, subscribe, publish []string
	lines := strings.Split(banner, "\n")
	for i, line := range lines {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "export "):
			block = append(block, line)
		case strings.HasPrefix(line, "curl -N"):
			subscribe = append(subscribe, line)
		case strings.HasPrefix(line, "curl -H") && strings.HasSuffix(line, `\`) && i+1 < len(lines):
			publish = append(publish, strings.TrimSuffix(line, `\`)+" "+strings.TrimSpace(lines[i+1]))
		}
	}
	if len(block) != 5 || len(subscribe) != 1 || len(publish) != 1 {
		t.Fatalf("the --dev banner should print 5 export lines, a subscribe and a publish curl:\n%s", banner)
	}
	prelude := strings.Join(block, "\n") + "\n"

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, "sh", "-c", prelude+subscribe[0]+" --no-progress-meter")
	subOut, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
	sc := bufio.NewScanner(subOut)
	for sc.Scan() && sc.Text() != "event: stream-open" {
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", prelude+publish[0]+" --no-progress-meter").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ids"`) {
		t.Fatalf("publish curl: %v %s", err, out)
	}
	got := false
	for sc.Scan() {
		if sc.Text() == `data: {"text":"hello"}` {
			got = true
			break
		}
	}
	if !got {
		t.Fatal("the subscribe curl did not receive the published event")
	}

	// The dev page is served.
	resp, err := http.Get(srv.URL + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("dev page: %v", err)
	}
	resp.Body.Close()

	if err := srv.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.Done:
		if !srv.Cmd.ProcessState.Success() {
			t.Fatalf("exit after SIGTERM: %v", srv.Cmd.ProcessState)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15 s of SIGTERM")
	}
}

// TestDevNeverShowsConfiguredPublishKey: with SLUICE_PUBLISH_KEYS set, the
// banner and the page at / hold only the dev key of --dev's own; the
// configured key still publishes. The banner tells a configured secret as
// such.
func TestDevNeverShowsConfiguredPublishKey(t *testing.T) {
	const configured = "configured-publisher-key-0123456789"
	srv := start(t, env(t, "", "SLUICE_PUBLISH_KEYS="+configured, "SLUICE_JWT_SECRET="+testSecret), "--dev")
	banner := srv.Output.String()
	ex := exports(t, banner)
	if strings.Contains(banner, configured) || ex["SLUICE_PUBLISH_KEY"] == configured {
		t.Fatalf("the banner shows the configured publisher key:\n%s", banner)
	}
	if !strings.Contains(banner, "signing secret: SLUICE_JWT_SECRET (configured)") {
		t.Fatalf("the banner does not say the secret is the configured one:\n%s", banner)
	}
	for _, host := range []string{"", "evil.example"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if host == "" && resp.StatusCode != http.StatusOK {
			t.Fatalf("dev page: %d", resp.StatusCode)
		}
		if strings.Contains(string(page), configured) {
			t.Fatalf("Host %q: the page (%d) holds the configured key", host, resp.StatusCode)
		}
	}
	for _, key := range []string{configured, ex["SLUICE_PUBLISH_KEY"]} {
		body := `{"channel":"` + ex["CHANNEL"] + `","event":"demo.said","data":1}`
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/publish", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish with the %s key: %d", map[bool]string{true: "configured", false: "dev"}[key == configured], resp.StatusCode)
		}
	}
}

// TestDevStateOutlivesRestart: the dev secret, publisher key and tenant are
// kept in the dev state file (mode 0600), so that a token of the first start
// and one from `sluice token` open streams on the second.
func TestDevStateOutlivesRestart(t *testing.T) {
	dir := t.TempDir()
	first := start(t, env(t, dir), "--dev")
	ex1 := exports(t, first.Output.String())
	if !strings.Contains(first.Output.String(), "signing secret: generated now, kept in "+filepath.Join(dir, "sluice", "dev.json")) {
		t.Fatalf("first start should say the secret was generated and is kept:\n%s", first.Output)
	}
	st, err := os.Stat(filepath.Join(dir, "sluice", "dev.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("dev state file: %v %v", st, err)
	}
	first.Stop()

	second := start(t, env(t, dir), "--dev")
	ex2 := exports(t, second.Output.String())
	if !strings.Contains(second.Output.String(), "signing secret: kept in ") {
		t.Fatalf("second start should say the secret was kept:\n%s", second.Output)
	}
	for _, k := range []string{"SLUICE_PUBLISH_KEY", "TENANT", "CHANNEL"} {
		if ex1[k] != ex2[k] {
			t.Errorf("%s changed across a restart: %s → %s", k, ex1[k], ex2[k])
		}
	}
	if code, _ := openStream(t, second.URL, ex2["CHANNEL"], "Bearer "+ex1["TOKEN"]); code != 200 {
		t.Fatalf("the first start's token on the second: %d", code)
	}
	tok, stderr, code := run(t, env(t, dir), "token", "--user", "u2", "--tenant", ex2["TENANT"], "--ttl", "5m")
	if code != 0 || !strings.Contains(stderr, "dev secret") {
		t.Fatalf("sluice token with the dev secret: %d %s", code, stderr)
	}
	if code, _ := openStream(t, second.URL, ex2["CHANNEL"], "Bearer "+strings.TrimSpace(tok)); code != 200 {
		t.Fatalf("a token of sluice token on the dev server: %d", code)
	}
}

// TestTokenOpensStream: a token from `sluice token` with SLUICE_JWT_SECRET
// opens a stream on a server with the same secret; a wrong tenant is
// refused.
func TestTokenOpensStream(t *testing.T) {
	e := env(t, "", "SLUICE_JWT_SECRET="+testSecret)
	tok, stderr, code := run(t, e, "token", "--user", "u1", "--tenant", testTenant, "--ttl", "5m", "--claim", "role=admin")
	if code != 0 {
		t.Fatalf("sluice token: exit %d: %s", code, stderr)
	}
	srv := start(t, e)
	ch := "scan-progress:" + testTenant + ":42"
	if code, id := openStream(t, srv.URL, ch, "Bearer "+strings.TrimSpace(tok)); code != 200 || id == "" {
		t.Fatalf("stream with the minted token: %d, stream-open id %q", code, id)
	}
	other := "scan-progress:0b6a4f52-6c2e-4e8a-9d71-2f0c8b7e5a13:42"
	if code, _ := openStream(t, srv.URL, other, "Bearer "+strings.TrimSpace(tok)); code != http.StatusForbidden {
		t.Fatalf("stream of another tenant: %d, want 403", code)
	}
}

// TestTokenAPIKey: `sluice token --api-key` prints a key and the entry that
// a server reading SLUICE_API_KEYS_FILE accepts it with.
func TestTokenAPIKey(t *testing.T) {
	e := env(t, "")
	out, stderr, code := run(t, e, "token", "--api-key", "--user", "svc", "--tenant", testTenant)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, stderr)
	}
	key, entry := lines[0], lines[1]
	var parsed map[string]string
	if err := json.Unmarshal([]byte(entry), &parsed); err != nil || !strings.HasPrefix(parsed["hash"], "sha256:") ||
		parsed["user"] != "svc" || parsed["tenant"] != testTenant || strings.Contains(entry, key) {
		t.Fatalf("entry %q: %v", entry, err)
	}
	file := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(file, []byte("["+entry+"]"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := start(t, env(t, "", "SLUICE_API_KEYS_FILE="+file))
	if code, _ := openStream(t, srv.URL, "jobs:"+testTenant+":1", "Api-Key "+key); code != 200 {
		t.Fatalf("stream with the new API key: %d", code)
	}
}

func TestParseClaim(t *testing.T) {
	for _, tc := range []struct {
		in      string
		key     string
		want    any // compared by its JSON
		wantErr string
	}{
		{in: "role=admin", key: "role", want: "admin"},
		{in: "n=3", key: "n", want: 3},
		{in: "big=12345678901234567890", key: "big", want: json.Number("12345678901234567890")},
		{in: "f=1.5", key: "f", want: 1.5},
		{in: "ok=true", key: "ok", want: true},
		{in: "no=false", key: "no", want: false},
		{in: "x=null", key: "x", want: nil},
		{in: `roles=["a","b"]`, key: "roles", want: []string{"a", "b"}},
		{in: `o={"a":1}`, key: "o", want: map[string]int{"a": 1}},
		{in: `s="3"`, key: "s", want: "3"},
		{in: "zip=007", key: "zip", want: "007"},
		{in: "e=", key: "e", want: ""},
		{in: "eq=a=b", key: "eq", want: "a=b"},
		{in: "two=1 2", key: "two", want: "1 2"},
		{in: "t=True", key: "t", want: "True"},
		{in: "iss=https://id.example", key: "iss", want: "https://id.example"},
		{in: "role", wantErr: "want name=value"},
		{in: "=x", wantErr: "want name=value"},
		{in: "sub=u", wantErr: "--user"},
		{in: "user_id=u", wantErr: "--user"},
		{in: "tenant_id=" + testTenant, wantErr: "--tenant"},
		{in: "exp=1", wantErr: "--ttl"},
		{in: "iat=1", wantErr: "--ttl"},
	} {
		k, v, err := parseClaim(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		got, _ := json.Marshal(v)
		want, _ := json.Marshal(tc.want)
		if err != nil || k != tc.key || string(got) != string(want) {
			t.Errorf("%q: %q %s %v, want %q %s", tc.in, k, got, err, tc.key, want)
		}
	}
}

// TestTokenFlags runs the token command in the process: what it refuses and
// the claims of what it prints.
func TestTokenFlags(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no dev state
	withSecret := func(k string) string {
		return map[string]string{"SLUICE_JWT_SECRET": testSecret, "SLUICE_JWT_ISSUER": "https://id.example"}[k]
	}
	noKey := func(string) string { return "" }
	for _, tc := range []struct {
		name    string
		args    []string
		getenv  func(string) string
		wantErr string
	}{
		{"no user", []string{"--tenant", testTenant}, withSecret, "--user is required"},
		{"no tenant", []string{"--user", "u"}, withSecret, "--tenant"},
		{"upper-case tenant", []string{"--user", "u", "--tenant", strings.ToUpper(testTenant)}, withSecret, "--tenant"},
		{"zero ttl", []string{"--user", "u", "--tenant", testTenant, "--ttl", "0s"}, withSecret, "--ttl"},
		{"negative ttl", []string{"--user", "u", "--tenant", testTenant, "--ttl", "-5m"}, withSecret, "--ttl"},
		{"reserved claim", []string{"--user", "u", "--tenant", testTenant, "--claim", "exp=1"}, withSecret, "--ttl"},
		{"claim twice", []string{"--user", "u", "--tenant", testTenant, "--claim", "a=1", "--claim", "a=2"}, withSecret, "twice"},
		{"claim on an API key", []string{"--api-key", "--user", "u", "--tenant", testTenant, "--claim", "a=1"}, withSecret, "API key"},
		{"no key at all", []string{"--user", "u", "--tenant", testTenant}, noKey, "sluice --dev once"},
		{"RSA alg for a secret", []string{"--user", "u", "--tenant", testTenant, "--alg", "RS256"}, withSecret, "HS256"},
		{"argument", []string{"--user", "u", "--tenant", testTenant, "extra"}, withSecret, "unexpected argument"},
		{"missing key file", []string{"--user", "u", "--tenant", testTenant, "--private-key", "/nonexistent.pem"}, withSecret, "private key"},
	} {
		var stdout bytes.Buffer
		err := token(tc.args, tc.getenv, &stdout, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || stdout.Len() > 0 {
			t.Errorf("%s: error %v, stdout %q; want an error with %q", tc.name, err, stdout.String(), tc.wantErr)
		}
	}

	var stdout bytes.Buffer
	if err := token([]string{"--user", "u1", "--tenant", testTenant, "--ttl", "90s", "--claim", "role=admin", "--claim", "level=3"}, withSecret, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	claims := payload(t, stdout.String())
	exp, iat := claims["exp"].(float64), claims["iat"].(float64)
	if claims["sub"] != "u1" || claims["tenant_id"] != testTenant || claims["role"] != "admin" || claims["level"] != 3.0 ||
		claims["iss"] != "https://id.example" || exp-iat != 90 || header(t, stdout.String())["alg"] != "HS256" {
		t.Fatalf("claims %v", claims)
	}
}

// TestTokenPrivateKey signs with RSA, ECDSA and Ed25519 keys in the PEM forms
// openssl writes, and checks each token against the matching public key as
// the server would (SLUICE_JWT_PUBLIC_KEY).
func TestTokenPrivateKey(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte { b, _ := x509.MarshalPKCS8PrivateKey(k); return b }
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	for _, tc := range []struct {
		name, blockType string
		der             []byte
		pub             any
		alg, wantAlg    string
		wantErr         string
	}{
		{"rsa pkcs8", "PRIVATE KEY", pkcs8(rsaKey), &rsaKey.PublicKey, "", "RS256", ""},
		{"rsa pkcs1 PS384", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), &rsaKey.PublicKey, "PS384", "PS384", ""},
		{"ec sec1", "EC PRIVATE KEY", ecDER, &ecKey.PublicKey, "", "ES384", ""},
		{"ec wrong curve", "PRIVATE KEY", pkcs8(ecKey), nil, "ES256", "", "does not fit"},
		{"ed25519", "PRIVATE KEY", pkcs8(edKey), edKey.Public(), "", "EdDSA", ""},
		{"HS256 for a key", "PRIVATE KEY", pkcs8(edKey), nil, "HS256", "", "does not fit"},
		{"public key", "PUBLIC KEY", []byte{1}, nil, "", "", "not a private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "key.pem")
			if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: tc.blockType, Bytes: tc.der}), 0o600); err != nil {
				t.Fatal(err)
			}
			getenv := func(k string) string {
				return map[string]string{"SLUICE_JWT_PRIVATE_KEY": keyFile, "SLUICE_JWT_SECRET": testSecret}[k]
			}
			args := []string{"--user", "u1", "--tenant", testTenant}
			if tc.alg != "" {
				args = append(args, "--alg", tc.alg)
			}
			var stdout bytes.Buffer
			err := token(args, getenv, &stdout, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := header(t, stdout.String())["alg"]; got != tc.wantAlg {
				t.Fatalf("alg %v, want %s", got, tc.wantAlg)
			}
			pubDER, _ := x509.MarshalPKIXPublicKey(tc.pub)
			pubFile := filepath.Join(dir, "pub.pem")
			if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
				t.Fatal(err)
			}
			verify(t, pubFile, strings.TrimSpace(stdout.String()))
		})
	}
}

// TestVersion: `sluice version` and `sluice --version` print the version,
// the commit of the tree it was built from and the Go version.
func TestVersion(t *testing.T) {
	// The commit the binary was built from, as the go command reads it (the
	// shared tree may have moved on since).
	commit := "unknown"
	info, err := exec.Command("go", "version", "-m", build(t)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^\s*build\s+vcs\.revision=(\S+)$`).FindSubmatch(info); m != nil {
		commit = string(m[1])
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, stderr, code := run(t, env(t, ""), args...)
		re := regexp.MustCompile(`^sluice (\S+) \(commit ` + regexp.QuoteMeta(commit) + `(\+dirty)?, ` + regexp.QuoteMeta(runtime.Version()) + ` \S+/\S+\)\n$`)
		if code != 0 || !re.MatchString(out) {
			t.Fatalf("%v: exit %d, %q %s; want %s", args, code, out, stderr, re)
		}
	}
	if _, _, code := run(t, env(t, ""), "version", "extra"); code != 2 {
		t.Fatalf("version with an argument: exit %d, want 2", code)
	}
}

// TestCheckConfig: exit status 0 and the configuration with every secret
// redacted when valid; 2 and the error when not, again without secrets.
func TestCheckConfig(t *testing.T) {
	const (
		secret    = "jwt-secret-never-printed-0123456789"
		pubKey    = "publisher-key-never-printed-0123"
		redisPass = "redis-password-never-printed"
		pgPass    = "pg-password-never-printed"
	)
	secrets := []string{secret, pubKey, redisPass, pgPass}
	base := []string{
		"SLUICE_JWT_SECRET=" + secret,
		"SLUICE_PUBLISH_KEYS=" + pubKey + ",other-publisher-key-0123456789",
		"SLUICE_BROKER=redis",
		"SLUICE_REDIS_URL=redis://default:" + redisPass + "@127.0.0.1:6379/0",
		"SLUICE_MEMBERSHIP=postgres",
		"SLUICE_POSTGRES_URL=postgres://app:" + pgPass + "@db:5432/app?sslmode=disable&password=" + pgPass,
	}
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		code     int
		stdout   []string // lines expected
		stderrIn string
	}{
		{"valid", base, []string{"--history-size", "7"}, 0, []string{
			"SLUICE_JWT_SECRET=<redacted: 35 bytes>",
			"SLUICE_PUBLISH_KEYS=<redacted: 2 keys>",
			"SLUICE_REDIS_URL=redis://default:xxxxx@127.0.0.1:6379/0",
			"SLUICE_POSTGRES_URL=postgres://app:xxxxx@db:5432/app?sslmode=disable&password=xxxxx",
			"SLUICE_HISTORY_SIZE=7",
			"SLUICE_KEEPALIVE=15s  # default",
		}, "configuration is valid"},
		{"flag wins over the environment", append(base, "SLUICE_HISTORY_SIZE=9"), []string{"--history-size=8"}, 0, []string{"SLUICE_HISTORY_SIZE=8"}, ""},
		{"dev", nil, []string{"--dev"}, 0, []string{"SLUICE_ADDR=127.0.0.1:8080  # default", "--dev: development mode"}, ""},
		{"invalid value", append(base, "SLUICE_KEEPALIVE=often"), nil, 2, nil, "SLUICE_KEEPALIVE"},
		{"no verifier", []string{"SLUICE_REDIS_URL=redis://:" + redisPass + "@h:1/0"}, nil, 2, nil, "SLUICE_JWT_SECRET"},
		{"bad redis URL", []string{"SLUICE_JWT_SECRET=" + secret, "SLUICE_BROKER=redis", "SLUICE_REDIS_URL=" + redisPass}, nil, 2, nil, "SLUICE_REDIS_URL"},
		{"unreadable key file", []string{"SLUICE_JWT_PUBLIC_KEY=/nonexistent.pem"}, nil, 2, nil, "nonexistent"},
		{"unknown flag", base, []string{"--no-such-flag"}, 2, nil, "no-such-flag"},
	} {
		stdout, stderr, code := run(t, env(t, "", tc.env...), append([]string{"check-config"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.stderrIn) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, stderr, tc.code, tc.stderrIn)
		}
		for _, want := range tc.stdout {
			if !strings.Contains("\n"+stdout, "\n"+want) {
				t.Errorf("%s: no line %q in\n%s", tc.name, want, stdout)
			}
		}
		for _, s := range secrets {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("%s: a secret is printed: %s\n%s%s", tc.name, s, stdout, stderr)
			}
		}
	}
}

func TestBadConfigExits(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "SLUICE_JWT_SECRET"},
		{[]string{"SLUICE_JWT_SECRET=x", "SLUICE_KEEPALIVE=often"}, "SLUICE_KEEPALIVE"},
	} {
		_, stderr, code := run(t, env(t, "", tc.env...))
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Fatalf("%v: exit %d, output %q", tc.env, code, stderr)
		}
	}
}

// header and payload decode the parts of a JWT without checking it.
func header(t *testing.T, tok string) map[string]any { return part(t, tok, 0) }

func payload(t *testing.T, tok string) map[string]any { return part(t, tok, 1) }

func part(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// verify checks tok as the server does with SLUICE_JWT_PUBLIC_KEY=pubFile.
func verify(t *testing.T, pubFile, tok string) {
	t.Helper()
	v, err := jwtauth.New(context.Background(), jwtauth.Config{PublicKeyFile: pubFile})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p, err := v.VerifyToken(context.Background(), tok)
	if err != nil || p.User != "u1" || p.Tenant != testTenant {
		t.Fatalf("the server's check: %+v %v", p, err)
	}
}

// TestHealthcheck: `sluice healthcheck` (the container HEALTHCHECK) exits 0
// when the gateway on SLUICE_ADDR answers /healthz, 1 when nothing does.
func TestHealthcheck(t *testing.T) {
	srv := start(t, env(t, "", "SLUICE_JWT_SECRET="+testSecret))
	addr := strings.TrimPrefix(srv.URL, "http://")
	if out, stderr, code := run(t, env(t, "", "SLUICE_ADDR="+addr), "healthcheck"); code != 0 || !strings.Contains(out, "200") {
		t.Fatalf("healthy gateway: exit %d, %q %q", code, out, stderr)
	}
	_, port, _ := net.SplitHostPort(addr)
	if _, _, code := run(t, env(t, ""), "healthcheck", "--addr", ":"+port); code != 0 {
		t.Fatalf("--addr :%s (all interfaces) should check 127.0.0.1: exit %d", port, code)
	}
	srv.Stop()
	if _, stderr, code := run(t, env(t, "", "SLUICE_ADDR="+addr), "healthcheck", "--timeout", "2s"); code != 1 || !strings.Contains(stderr, "healthcheck") {
		t.Fatalf("no gateway: exit %d, %q; want 1", code, stderr)
	}
}

// TestHelp: --help lists the commands and every flag, and exits 0.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"sluice token --user", "sluice check-config", "sluice version", "-history-size"}},
		{[]string{"token", "--help"}, []string{"-claim", "-private-key", "SLUICE_JWT_PRIVATE_KEY", "-api-key"}},
		{[]string{"check-config", "-h"}, []string{"-history-size"}},
	} {
		_, stderr, code := run(t, env(t, ""), tc.args...)
		for _, w := range tc.want {
			if code != 0 || !strings.Contains(stderr, w) {
				t.Errorf("%v: exit %d, no %q in\n%s", tc.args, code, w, stderr)
			}
		}
	}
}
