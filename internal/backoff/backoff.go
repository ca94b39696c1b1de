// Package backoff is the capped exponential backoff of the module's retry
// and reconnection loops (the Redis broker's Pub/Sub connection, the django
// ingest, the outbox relay, the publisher and the stream client): a ceiling
// that starts at a first wait and doubles with each attempt up to a longest
// wait, and a jitter that draws the wait from it.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter says how a wait is drawn from its ceiling.
type Jitter int

const (
	// Equal draws the wait uniformly from [ceiling/2, ceiling]: waits still
	// grow, and clients that failed together do not retry together.
	Equal Jitter = iota
	// None waits the ceiling itself.
	None
	// Above draws the wait uniformly from [ceiling, ceiling+ceiling/4], so
	// that the ceiling (e.g. a server's retry) stays a lower bound.
	Above
)

// Draw returns a wait drawn from ceiling c; 0 when c is not positive.
func (j Jitter) Draw(c time.Duration) time.Duration {
	if c <= 0 {
		return 0
	}
	switch j {
	case None:
		return c
	case Above:
		return c + rand.N(c/4+1)
	default:
		return c/2 + rand.N(c/2+1)
	}
}

// Ceiling is the ceiling of the wait before retry attempt+1 (attempt 0 is
// the first retry): first doubled attempt times, capped at longest (or at
// first when longest is smaller). A first of zero or less does not grow:
// every ceiling is then longest.
func Ceiling(first, longest time.Duration, attempt int) time.Duration {
	if first <= 0 {
		return longest
	}
	longest = max(longest, first)
	d := first
	for i := 0; i < attempt && d < longest; i++ {
		if d > longest/2 {
			return longest
		}
		d *= 2
	}
	return d
}

// Backoff counts consecutive attempts and returns the wait before each.
// Its zero value waits nothing; set First and Longest. It is not safe for
// concurrent use.
type Backoff struct {
	// First is the ceiling of the first wait.
	First time.Duration
	// Longest caps every ceiling.
	Longest time.Duration
	// Jitter draws each wait from its ceiling (Equal when zero).
	Jitter Jitter

	attempt int
}

// Next returns the wait before the next attempt and counts that attempt.
func (b *Backoff) Next() time.Duration {
	d := b.Jitter.Draw(Ceiling(b.First, b.Longest, b.attempt))
	if b.attempt < 64 {
		b.attempt++
	}
	return d
}

// Reset starts again from First, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }
