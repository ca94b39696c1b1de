package server

import (
	"bytes"
	_ "embed"
	"html/template"
	"net"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/problem"
)

// The dev console (web/console.html) is the page --dev serves at "/": it
// subscribes to any channels of the demo tenant through sluice.js with
// tickets, shows every event with its id, time and data, publishes any event
// type with the dev publisher key, and resumes from the last id after a
// reload. It is a development tool: it holds a token and a publisher key, so
// it is served only in --dev and only to a loopback Host.

//go:embed web/console.html
var consoleHTML string

var consoleTmpl = template.Must(template.New("console").Parse(consoleHTML))

// renderConsole renders the console for d.
func renderConsole(d DevInfo) ([]byte, error) {
	var buf bytes.Buffer
	if err := consoleTmpl.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// serveConsole serves the dev console. A request whose Host is not a
// loopback name or address gets 403: the page holds credentials, and a
// loopback-only Host check keeps another site from reading it through DNS
// rebinding.
func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request) {
	if !loopbackHost(r.Host) {
		problem.Write(w, problem.New(http.StatusForbidden, problem.CodeForbidden,
			"the dev console is served to localhost only (it holds a token and a publisher key): open it as http://127.0.0.1:<port>/ or http://localhost:<port>/ on the machine running sluice --dev"))
		return
	}
	page, err := renderConsole(s.dev.info)
	if err != nil {
		s.log.Error("rendering the dev console", "err", err)
		problem.WriteError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(page)
}

// serveFavicon answers a browser's /favicon.ico in --dev with 204 (the
// console carries its icon inline), rather than a 404 in its console.
func serveFavicon(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "max-age=86400")
	w.WriteHeader(http.StatusNoContent)
}

// loopbackHost reports whether a Host header names this machine: localhost
// (and *.localhost) or a loopback address, with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}
