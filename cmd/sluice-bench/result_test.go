package main

import (
	"testing"
	"time"
)

// TestValidateWarmup checks which --warmup values a run accepts.
func TestValidateWarmup(t *testing.T) {
	for _, tt := range []struct {
		shape  string
		warmup time.Duration
		ok     bool
	}{
		{"fanout", 0, true},
		{"fanout", 2 * time.Second, true},
		{"many-channels", 2 * time.Second, true},
		{"fanout", 10 * time.Second, false}, // not shorter than --duration
		{"fanout", -time.Second, false},
		{"idle", 2 * time.Second, false}, // publishes nothing to measure
		{"churn", 2 * time.Second, false},
		{"resume-storm", 2 * time.Second, false},
		{"idle", 0, true},
	} {
		c := config{shape: tt.shape, streams: 10, secret: "s", publishKey: "k", duration: 10 * time.Second,
			warmup: tt.warmup, rate: 10, ramp: 100, churn: 10, publishers: 1, batch: 1000, buf: 2048}
		if err := c.validate(); (err == nil) != tt.ok {
			t.Errorf("%s --warmup %v: validate() = %v, want ok %v", tt.shape, tt.warmup, err, tt.ok)
		}
	}
}

// TestFillWarmup checks that latency_* describe the events after the
// warm-up and latency_all_* every event.
func TestFillWarmup(t *testing.T) {
	b := &bench{cfg: config{warmup: 2 * time.Second}}
	for i := range 99 {
		b.lat[i%lanes].record(int64(10+i%3) * 1e6) // 10–12 ms, after the warm-up
	}
	b.warmLat[3].record(500e6) // one slow warm-up event
	var r result
	b.fill(&r, nil, proc{}, proc{}, proc{}, time.Now(), time.Second)
	if r.LatMaxus > 12_100 || r.LatP99us > 12_100 {
		t.Errorf("steady p99 %v µs, max %v µs: the warm-up event was counted", r.LatP99us, r.LatMaxus)
	}
	if r.AllMaxus < 499_000 || r.AllP99us < 10_000 || r.AllP99us > 12_100 {
		t.Errorf("all: p99 %v µs, max %v µs; want p99 of 10–12 ms and max 500 ms", r.AllP99us, r.AllMaxus)
	}
	if r.WarmupS != 2 {
		t.Errorf("warmup_s %v, want 2", r.WarmupS)
	}
}
