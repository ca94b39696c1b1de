// Package redistest holds what the tests that need a real Redis share: the
// URL they run against, plain clients, and key prefixes of their own that are
// deleted at cleanup.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// URL returns SLUICE_TEST_REDIS_URL, or skips tb with a message saying how to
// run what (e.g. "the Redis broker tests").
func URL(tb testing.TB, what string) string {
	u := os.Getenv("SLUICE_TEST_REDIS_URL")
	if u == "" {
		tb.Skip("set SLUICE_TEST_REDIS_URL=redis://127.0.0.1:6379/9 to run " + what + " against a real Redis")
	}
	return u
}

// Random returns 12 random hex digits, for unique names.
func Random() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Client returns a plain client of url, closed at cleanup.
func Client(tb testing.TB, url string) valkey.Client {
	tb.Helper()
	opt, err := valkey.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	opt.DisableCache = true
	c, err := valkey.NewClient(opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// DeleteKeys deletes every key under prefix and returns how many there were.
func DeleteKeys(tb testing.TB, c valkey.Client, prefix string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cursor uint64
	n := 0
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Errorf("scan %s*: %v", prefix, err)
			return n
		}
		if len(e.Elements) > 0 {
			n += len(e.Elements)
			if err := c.Do(ctx, c.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				tb.Errorf("unlink: %v", err)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return n
		}
	}
}
