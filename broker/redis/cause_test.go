package redis_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	redisbroker "github.com/sluicehq/sluice/broker/redis"
	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/internal/syncbuf"
)

// A rotated Redis password is logged at ERROR with its cause and what to
// check, not only as a lost connection.
func TestWrongPasswordLogged(t *testing.T) {
	testURL(t)
	srv := redistest.StartServer(t, "--requirepass", "first-secret")
	var logs syncbuf.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := redisbroker.New(ctx, redisbroker.Config{
		URL:    "redis://:first-secret@" + srv.Addr() + "/0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	admin := redistest.Client(t, "redis://:first-secret@"+srv.Addr()+"/0")
	for _, cmd := range [][]string{
		{"CONFIG", "SET", "requirepass", "second-secret"},
		{"CLIENT", "KILL", "TYPE", "pubsub"},
	} {
		if err := admin.Do(t.Context(), admin.B().Arbitrary(cmd...).Build()).Error(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "level=ERROR") {
		if time.Now().After(deadline) {
			t.Fatalf("no ERROR line after the password changed; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	line := logs.String()[strings.Index(logs.String(), "level=ERROR"):]
	line, _, _ = strings.Cut(line, "\n")
	if !strings.Contains(line, "WRONGPASS") || !strings.Contains(line, "SLUICE_REDIS_URL") {
		t.Fatalf("ERROR line %q does not give the cause and what to check", line)
	}
	if err := b.Ready(t.Context()); err == nil {
		t.Fatal("Ready while the Pub/Sub connection cannot be restored")
	}
}
