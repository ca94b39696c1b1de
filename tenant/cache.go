package tenant

import (
	"sync"
	"time"
)

// DefaultCacheSize bounds the answers a Postgres or HTTP source keeps.
const DefaultCacheSize = 10000

// cache remembers membership answers, positive and negative, for a TTL. It
// holds at most size entries: when full, expired entries are dropped and, if
// that is not enough, an eighth of the rest, chosen arbitrarily (map order). Faults are never cached.
// A non-positive TTL disables it.
type cache[K comparable] struct {
	ttl  time.Duration
	size int
	now  func() time.Time

	mu sync.Mutex
	m  map[K]cached
}

type cached struct {
	member   bool
	deadline time.Time
}

func newCache[K comparable](ttl time.Duration, size int, now func() time.Time) *cache[K] {
	if size <= 0 {
		size = DefaultCacheSize
	}
	if now == nil {
		now = time.Now
	}
	return &cache[K]{ttl: ttl, size: size, now: now, m: make(map[K]cached)}
}

func (c *cache[K]) get(k K) (member, ok bool) {
	if c.ttl <= 0 {
		return false, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return false, false
	}
	if !now.Before(e.deadline) {
		delete(c.m, k)
		return false, false
	}
	return e.member, true
}

func (c *cache[K]) put(k K, member bool) {
	if c.ttl <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.size {
		for k, e := range c.m {
			if !now.Before(e.deadline) {
				delete(c.m, k)
			}
		}
		// Still full of live answers: drop an eighth, so that the sweep
		// above runs once per many insertions.
		for k := range c.m {
			if len(c.m) <= c.size-c.size/8-1 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = cached{member: member, deadline: now.Add(c.ttl)}
}

func (c *cache[K]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
