package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	secret  = "quickstart-test-secret-0123456789abcdef"
	tenantA = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"
)

// serve runs the quickstart as main would, on a free port, and returns its
// base URL.
func serve(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	env := map[string]string{"SLUICE_JWT_SECRET": secret, "SLUICE_LOG_LEVEL": "error"}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, pw)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		go io.Copy(io.Discard, pr)
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v", err)
	}
	m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("output %q", line)
	}
	go io.Copy(io.Discard, pr)
	return m[1]
}

func token(t *testing.T, roles ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ann", "tenant_id": tenantA, "roles": roles, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(t *testing.T, method, url, tok, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func code(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var p struct {
		Code string `json:"code"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return p.Code
}

// TestQuickstart runs the guide's complete main.go: the role check of the
// hook, a malformed board id as 400, and a note published to a stream.
func TestQuickstart(t *testing.T) {
	base := serve(t)
	reader, writer, guest := token(t, "board.read"), token(t, "board.read", "board.write"), token(t)

	for _, tt := range []struct {
		name, method, path, tok, body string
		status                        int
		code                          string
	}{
		{"no role", "GET", "/api/boards/b1/events", guest, "", 403, "forbidden"},
		{"malformed board id", "GET", "/api/boards/a%20b/events", reader, "", 400, "malformed_channel"},
		{"note without board.write", "POST", "/api/boards/b1/notes", reader, `{"text":"x"}`, 403, "forbidden"},
		{"note without text", "POST", "/api/boards/b1/notes", writer, `{}`, 400, "bad_request"},
	} {
		resp := request(t, tt.method, base+tt.path, tt.tok, tt.body)
		if c := code(t, resp); resp.StatusCode != tt.status || c != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, resp.StatusCode, c, tt.status, tt.code)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/boards/b1/events", nil)
	req.Header.Set("Authorization", "Bearer "+reader)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("stream: %s", stream.Status)
	}
	sc := bufio.NewScanner(stream.Body)
	for sc.Scan() && sc.Text() != "event: stream-open" {
	}
	resp := request(t, "POST", base+"/api/boards/b1/notes", writer, `{"text":"hello board"}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("note: %s", resp.Status)
	}
	var typ string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			typ = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok && typ == "board.note_added" {
			if v != `{"by":"ann","text":"hello board"}` {
				t.Fatalf("data %s", v)
			}
			return
		}
	}
	t.Fatalf("no board.note_added: %v", sc.Err())
}
