package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/server"
)

// TestDevConsoleServed: --dev serves the console at "/" to a loopback Host
// only, marked as a development tool, with the dev token and the dev
// publisher key (never a configured one), and /favicon.ico as 204; without
// --dev, "/" is a 404 problem.
func TestDevConsoleServed(t *testing.T) {
	const configured = "configured-publisher-key-0123456789"
	cfg := server.DefaultConfig()
	cfg.Dev = true
	cfg.LogLevel = "error"
	cfg.PublishKeys = []string{configured}
	gw, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	dev, ok := gw.Dev()
	if !ok {
		t.Fatal("no dev info")
	}
	get := func(h http.Handler, host, path string) (*http.Response, string) {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		b, _ := io.ReadAll(w.Result().Body)
		return w.Result(), string(b)
	}
	for _, host := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost"} {
		resp, body := get(gw.Handler(), host, "/")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %s", host, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{"Development tool", "development tool", `src="/sluice.js"`, dev.Token, dev.PublishKey, dev.Channel.String(), `rel="icon"`, `events: ["*"]`, "ticket: true"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the console lacks %q", host, want)
			}
		}
		if strings.Contains(body, configured) {
			t.Fatalf("%s: the console shows a configured publisher key", host)
		}
		if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", host, resp.Header)
		}
	}
	for _, host := range []string{"attacker.example", "attacker.example:8080", "10.0.0.5:8080", "127.0.0.1.attacker.example"} {
		resp, body := get(gw.Handler(), host, "/")
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, dev.Token) || !strings.Contains(body, "localhost only") {
			t.Errorf("%s: %d %s", host, resp.StatusCode, body)
		}
	}
	if resp, _ := get(gw.Handler(), "127.0.0.1:8080", "/favicon.ico"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("/favicon.ico: %d", resp.StatusCode)
	}

	e := newEnv(t, nil)
	resp, err := http.Get(e.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("without --dev, / is %d", resp.StatusCode)
	}
}
