package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/server"
)

// publishWithKey posts body to /publish with an Idempotency-Key.
func (e *env) publishWithKey(key string, body any) (int, map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/publish", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+testPublishKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	return doJSON(e.t, req)
}

// eachIdempotencyBroker runs f on each broker the Idempotency-Key tests
// cover (memory; Redis when SLUICE_TEST_REDIS_URL is set), with a gateway, a
// channel of its own and a stream open on it, past stream-open.
func eachIdempotencyBroker(t *testing.T, f func(t *testing.T, e *env, ch string, s *stream)) {
	brokers := map[string]func(*server.Config){
		"memory": nil,
		"redis": func(c *server.Config) {
			c.Broker = "redis"
			c.RedisURL = redistest.URL(t, "the Redis variant")
			c.RedisPrefix = "sluicetest:" + redistest.Random() + ":"
			rc := redistest.Client(t, c.RedisURL)
			t.Cleanup(func() { redistest.DeleteKeys(t, rc, c.RedisPrefix) })
		},
	}
	if _, ok := os.LookupEnv("SLUICE_TEST_REDIS_URL"); !ok {
		delete(brokers, "redis")
		t.Log("SLUICE_TEST_REDIS_URL unset: the Redis variant is skipped")
	}
	for name, mutate := range brokers {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mutate)
			ch := chanName("scan-progress", tenantA, "idem-"+redistest.Random())
			s := open(t, e.eventsURL(url.Values{"channel": {ch}}), bearer(token(t, "u1", tenantA, time.Hour, nil)))
			defer s.close()
			s.expect("stream-open")
			f(t, e, ch, s)
		})
	}
}

// progress is a POST /publish body of scan.progress events of ch, one per
// datum.
func progress(ch string, data ...int) map[string]any {
	evs := make([]map[string]any, len(data))
	for i, d := range data {
		evs[i] = map[string]any{"channel": ch, "event": "scan.progress", "data": d}
	}
	return map[string]any{"events": evs}
}

// expectOnly checks that the next events of s are exactly want, each
// "<type> <data>".
func expectOnly(t *testing.T, s *stream, want ...string) {
	t.Helper()
	for _, w := range want {
		typ, data, _ := strings.Cut(w, " ")
		if ev := s.expect(typ); ev.Data != data {
			t.Fatalf("stream got %s %q, want %s", ev.Type, ev.Data, w)
		}
	}
}

// POST /publish with an Idempotency-Key: a repeat answers the first ids and
// publishes nothing; a key reused for another batch is refused; a malformed
// key is refused before anything is published. On both brokers.
func TestPublishIdempotencyKey(t *testing.T) {
	eachIdempotencyBroker(t, func(t *testing.T, e *env, ch string, s *stream) {
		batch := progress(ch, 1, 2)
		st, first := e.publishWithKey("batch-1", batch)
		if st != http.StatusOK {
			t.Fatalf("first publish: %d %v", st, first)
		}
		for range 2 {
			st, again := e.publishWithKey("batch-1", batch)
			if st != http.StatusOK || !equalJSON(again["ids"], first["ids"]) {
				t.Fatalf("repeat: %d %v, want 200 %v", st, again, first["ids"])
			}
		}
		st, conflict := e.publishWithKey("batch-1", map[string]any{"channel": ch, "event": "scan.progress", "data": 3})
		if st != http.StatusUnprocessableEntity || conflict["code"] != "idempotency_conflict" {
			t.Fatalf("key reused for another batch: %d %v, want 422 idempotency_conflict", st, conflict)
		}
		for _, bad := range []string{"has space", strings.Repeat("k", 256), "tab\tkey"} {
			st, reply := e.publishWithKey(bad, map[string]any{"channel": ch, "event": "scan.progress", "data": 4})
			if st != http.StatusBadRequest || reply["code"] != "invalid_idempotency_key" {
				t.Fatalf("key %q: %d %v, want 400 invalid_idempotency_key", bad, st, reply)
			}
		}
		e.mustPublish(ch, "scan.done", 5)
		// The stream got the batch once, then scan.done: nothing else.
		expectOnly(t, s, "scan.progress 1", "scan.progress 2", "scan.done 5")
	})
}

// A key reused for another batch of the same length (one event's data
// changed) is refused with 422 idempotency_conflict and publishes nothing;
// the first batch repeated after it is answered the first ids and publishes
// nothing new. On both brokers.
func TestPublishIdempotencyKeyOtherBatch(t *testing.T) {
	eachIdempotencyBroker(t, func(t *testing.T, e *env, ch string, s *stream) {
		st, first := e.publishWithKey("batch-1", progress(ch, 1, 2))
		if st != http.StatusOK {
			t.Fatalf("first publish: %d %v", st, first)
		}
		st, conflict := e.publishWithKey("batch-1", progress(ch, 1, 20))
		if st != http.StatusUnprocessableEntity || conflict["code"] != "idempotency_conflict" {
			t.Fatalf("key reused for a batch of the same length with other data: %d %v, want 422 idempotency_conflict", st, conflict)
		}
		st, again := e.publishWithKey("batch-1", progress(ch, 1, 2))
		if st != http.StatusOK || !equalJSON(again["ids"], first["ids"]) {
			t.Fatalf("repeat of the first batch: %d %v, want 200 %v", st, again, first["ids"])
		}
		e.mustPublish(ch, "scan.done", 5)
		// The first batch once, then scan.done: nothing of the refused
		// batch, nothing of the repeat.
		expectOnly(t, s, "scan.progress 1", "scan.progress 2", "scan.done 5")
	})
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
