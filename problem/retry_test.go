package problem

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

type waitErr struct{ d time.Duration }

func (e waitErr) Error() string             { return "wait" }
func (e waitErr) RetryAfter() time.Duration { return e.d }

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Millisecond:        "1",
		time.Second:             "1",
		1001 * time.Millisecond: "2",
		90 * time.Second:        "90",
	} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %s, want %s", d, got, want)
		}
	}
	if _, ok := RetryAfter(errors.New("x")); ok {
		t.Fatal("RetryAfter of a plain error")
	}
	if d, ok := RetryAfter(fmt.Errorf("wrapped: %w", waitErr{3 * time.Second})); !ok || d != 3*time.Second {
		t.Fatalf("RetryAfter through a wrap: %v %v", d, ok)
	}
}

// WriteError sends the wait an error suggests as Retry-After, and none
// without one.
func TestWriteErrorRetryAfter(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, errors.Join(New(429, CodeRateLimited, "slow down"), waitErr{1500 * time.Millisecond}))
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("%d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	w = httptest.NewRecorder()
	WriteError(w, New(400, CodeBadRequest, "no"))
	if w.Header().Get("Retry-After") != "" {
		t.Fatal("Retry-After without a wait")
	}
}
