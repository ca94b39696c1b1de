package backoff

import (
	"testing"
	"time"
)

const ms = time.Millisecond

func TestCeiling(t *testing.T) {
	for _, tc := range []struct {
		first, longest time.Duration
		attempt        int
		want           time.Duration
	}{
		{50 * ms, 5 * time.Second, 0, 50 * ms},
		{50 * ms, 5 * time.Second, 1, 100 * ms},
		{50 * ms, 5 * time.Second, 6, 3200 * ms},
		{50 * ms, 5 * time.Second, 7, 5 * time.Second},
		{50 * ms, 5 * time.Second, 1 << 30, 5 * time.Second},
		{100 * ms, 2 * time.Second, 4, 1600 * ms},
		{100 * ms, 2 * time.Second, 5, 2 * time.Second},
		{time.Second, 10 * ms, 3, time.Second}, // longest below first: first
		{0, time.Second, 3, time.Second},       // first 0: longest
		{time.Duration(1) << 61, time.Duration(1<<63 - 1), 10, time.Duration(1<<63 - 1)},
	} {
		if got := Ceiling(tc.first, tc.longest, tc.attempt); got != tc.want {
			t.Errorf("Ceiling(%v, %v, %d) = %v, want %v", tc.first, tc.longest, tc.attempt, got, tc.want)
		}
	}
}

func TestDraw(t *testing.T) {
	const c = 400 * ms
	for range 1000 {
		if d := Equal.Draw(c); d < c/2 || d > c {
			t.Fatalf("Equal.Draw(%v) = %v", c, d)
		}
		if d := Above.Draw(c); d < c || d > c+c/4 {
			t.Fatalf("Above.Draw(%v) = %v", c, d)
		}
	}
	if d := None.Draw(c); d != c {
		t.Fatalf("None.Draw(%v) = %v", c, d)
	}
	for _, j := range []Jitter{Equal, None, Above} {
		if d := j.Draw(0); d != 0 {
			t.Errorf("%v.Draw(0) = %v", j, d)
		}
		if d := j.Draw(-time.Second); d != 0 {
			t.Errorf("%v.Draw(-1s) = %v", j, d)
		}
	}
}

func TestBackoffNextReset(t *testing.T) {
	b := Backoff{First: 100 * ms, Longest: 2 * time.Second, Jitter: None}
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		if d := b.Next(); d != w {
			t.Fatalf("wait %d = %v, want %v", i, d, w)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*ms {
		t.Fatalf("after Reset: %v, want 100ms", d)
	}
	for range 200 {
		b.Next()
	}
	if d := b.Next(); d != 2*time.Second {
		t.Fatalf("after many attempts: %v", d)
	}
}
