// Package testutil is the test support shared by the module's packages: a
// polling helper (Eventually), a reader of raw event-stream blocks
// (BlockReader) and a launcher of the built sluice binary (StartSluice).
//
// It is imported by tests only (a test of this package checks that no other
// package's non-test code imports it).
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds, failing the test with what after
// d. It polls often at first (from every millisecond), then every 20 ms.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}
