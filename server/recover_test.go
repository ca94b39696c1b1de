package server_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/server"
)

// A handler that panics (a hook, a library, a broker client) gets a 500
// problem, not a dropped connection, and the process serves on.
func TestHandlerPanicAnswered(t *testing.T) {
	e := newEnv(t, nil, server.WithRoutes(func(g *sluice.Gateway, mux *http.ServeMux) {
		mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	}))
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/boom", nil)
	st, body := doJSON(t, req)
	if st != http.StatusInternalServerError || body["code"] != "internal_error" {
		t.Fatalf("panicking handler: %d %v, want 500 internal_error", st, body)
	}
	// Streams behind the same handler chain still open and receive.
	ch := chanName("scan-progress", tenantA, "after-panic")
	s := open(t, e.eventsURL(url.Values{"channel": {ch}}), bearer(token(t, "u1", tenantA, time.Hour, nil)))
	defer s.close()
	s.expect("stream-open")
	e.mustPublish(ch, "scan.progress", 1)
	s.expect("scan.progress")
}
