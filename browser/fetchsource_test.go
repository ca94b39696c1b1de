package browser

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestEveryEventType feeds sluice.js, with events ["*"], a crafted stream:
// every event type is delivered, multi-line data and CRLF line ends parse
// as WHATWG says, an event without id keeps the last one, a mid-stream
// stream-reset's id is where the reconnection resumes from.
func TestEveryEventType(t *testing.T) {
	needChromium(t)
	script, err := os.ReadFile(filepath.Join("..", "web", "sluice.js"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var queries []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, testPage)
	})
	mux.HandleFunc("GET /sluice.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(script)
	})
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a.b.c") })
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query().Get("lastEventId"))
		n := len(queries)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		if n == 1 {
			io.WriteString(w, "retry: 500\n\nid: c0\nevent: stream-open\ndata: {\"channels\":[\"x\"]}\n\n"+
				": keep-alive\n\n"+
				"id: c1\nevent: scan.progress\ndata: {\"a\":\ndata: 1}\n\n"+
				"event: other.type\r\ndata: \"plain\"\r\n\r\n"+
				"id: c2\revent: stream-reset\rdata: {\"reason\":\"history-lost\"}\r\r")
			return // the stream drops
		}
		io.WriteString(w, "id: c2\nevent: stream-open\ndata: {\"channels\":[\"x\"]}\n\nid: c3\nevent: last.one\ndata: 3\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	p := newPage(t)
	p.navigate(srv.URL + "/")
	var i int
	p.must(`(() => { const s = { got: [], opens: [], resets: [], errors: [] };
	  s.sub = Sluice.subscribe({ channels: ["x"], events: ["*"], getToken: () => "a.b.c",
	    onOpen: info => s.opens.push(info), onEvent: (type, data, id) => s.got.push({ type, data, id }),
	    onReset: (reason, id) => s.resets.push(reason + "@" + id), onError: (c, text) => s.errors.push({ condition: c, text }) });
	  subs.push(s); return subs.length - 1; })()`, &i)
	st := p.waitState(i, 15*time.Second, "the second stream's event", func(s subState) bool { return len(s.Got) == 3 })
	want := []struct{ typ, data, id string }{{"scan.progress", `{"a":1}`, "c1"}, {"other.type", `"plain"`, "c1"}, {"last.one", "3", "c3"}}
	for k, w := range want {
		g := st.Got[k]
		if g.Type != w.typ || string(g.Data) != w.data || g.ID != w.id {
			t.Errorf("event %d: %s %s %s, want %+v", k, g.Type, g.Data, g.ID, w)
		}
	}
	if len(st.Resets) != 1 || st.Resets[0] != "history-lost@c2" {
		t.Errorf("resets %q", st.Resets)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queries) != 2 || queries[0] != "" || queries[1] != "c2" {
		t.Errorf("lastEventId of each request %q, want [\"\" c2]", queries)
	}
	p.must("subs["+strconv.Itoa(i)+"].sub.close(), 1", nil)
}
