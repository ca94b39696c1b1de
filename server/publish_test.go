package server_test

// POST /publish over real HTTP: what it accepts and refuses (with which
// problem code), and that events arrive in the order published.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/server"
)

func TestPublishValidation(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxEventBytes = 16 })
	ch := chanName("scan-progress", tenantA, "1")
	ev := func(data string) string {
		return `{"channel":"` + ch + `","event":"scan.progress","data":` + data + `}`
	}
	batch := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = ev(strconv.Itoa(i))
		}
		return `{"events":[` + strings.Join(parts, ",") + `]}`
	}
	cases := []struct {
		name   string
		key    string
		body   string
		status int
		code   string
		ids    int
	}{
		{"single", testPublishKey, ev(`{"pct":1}`), 200, "", 1},
		{"null data", testPublishKey, ev(`null`), 200, "", 1},
		{"exactly the limit", testPublishKey, ev(`"` + strings.Repeat("x", 14) + `"`), 200, "", 1},
		{"limit counts compact bytes", testPublishKey, ev(`[ 1, 2, 3, 4, 5, 6, 7 ]`), 200, "", 1},
		{"over the limit", testPublishKey, ev(`"` + strings.Repeat("x", 15) + `"`), 413, "event_too_large", 0},
		{"batch", testPublishKey, batch(3), 200, "", 3},
		{"batch of 1000", testPublishKey, batch(1000), 200, "", 1000},
		{"batch of 1001", testPublishKey, batch(1001), 413, "batch_too_large", 0},
		{"empty batch", testPublishKey, `{"events":[]}`, 400, "empty_batch", 0},
		{"null batch", testPublishKey, `{"events":null}`, 400, "empty_batch", 0},
		{"one bad event refuses the batch", testPublishKey, `{"events":[` + ev("1") + `,{"channel":"x","event":"a.b","data":1}]}`, 400, "malformed_channel", 0},
		{"reserved name", testPublishKey, `{"channel":"` + ch + `","event":"stream-open","data":1}`, 400, "invalid_event", 0},
		{"name without verb", testPublishKey, `{"channel":"` + ch + `","event":"scan","data":1}`, 400, "invalid_event", 0},
		{"missing data", testPublishKey, `{"channel":"` + ch + `","event":"scan.progress"}`, 400, "invalid_event", 0},
		{"not JSON", testPublishKey, `{"channel":`, 400, "invalid_json", 0},
		{"unknown field", testPublishKey, `{"channel":"` + ch + `","event":"a.b","data":1,"x":1}`, 400, "invalid_json", 0},
		{"no key", "", ev("1"), 401, "missing_credentials", 0},
		{"wrong key", "not-the-publisher-key", ev("1"), 401, "invalid_token", 0},
		{"user token is not a publisher key", token(t, "u", tenantA, time.Hour, nil), ev("1"), 401, "invalid_token", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/publish", strings.NewReader(tc.body))
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				if p := problemOf(t, resp); p["code"] != tc.code {
					t.Fatalf("code %v, want %s", p["code"], tc.code)
				}
				if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="sluice"`) {
					t.Fatal("401 without WWW-Authenticate")
				}
				return
			}
			defer resp.Body.Close()
			var reply struct{ IDs []string }
			_ = json.NewDecoder(resp.Body).Decode(&reply)
			if len(reply.IDs) != tc.ids {
				t.Fatalf("%d ids, want %d", len(reply.IDs), tc.ids)
			}
		})
	}
}

func TestPublishedInOrderAndNothingOfARefusedBatch(t *testing.T) {
	e := newEnv(t, nil)
	ch := chanName("doc", tenantA, "order")
	s := open(t, e.eventsURL(url.Values{"channel": {ch}}), bearer(token(t, "u", tenantA, time.Hour, nil)))
	s.expect("stream-open")
	st, _ := e.publish(map[string]any{"events": []any{
		map[string]any{"channel": ch, "event": "doc.updated", "data": "refused"},
		map[string]any{"channel": ch, "event": "BAD", "data": 1},
	}})
	if st != 400 {
		t.Fatal(st)
	}
	for i := range 5 {
		e.mustPublish(ch, "doc.updated", i)
	}
	for i := range 5 {
		if ev := s.expect("doc.updated"); ev.Data != strconv.Itoa(i) {
			t.Fatalf("event %d: %s", i, ev.Data)
		}
	}
}
