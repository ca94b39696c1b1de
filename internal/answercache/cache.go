// Package answercache remembers the answers of an authorization source (a
// membership source, a backend authorizer) for a while, so that a burst of
// requests asks the source once.
//
// A Cache is a bounded LRU (github.com/hashicorp/golang-lru/v2/simplelru)
// whose entries each carry their own deadline, so that one bound covers
// answers kept for different durations (an allowance longer than a
// refusal, one route longer than another). Do also makes concurrent callers
// of one key share a single fetch (golang.org/x/sync/singleflight). It
// starts no goroutine: an expired entry is dropped when it is next looked up
// or when it is the least recently used one and room is needed.
package answercache

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"
)

// DefaultSize bounds the answers a Cache keeps when New is given no size.
const DefaultSize = 10000

// Cache holds answers of type V by key. It is safe for concurrent use.
type Cache[V any] struct {
	now    func() time.Time
	flight singleflight.Group

	mu  sync.Mutex
	lru *simplelru.LRU[string, entry[V]]
}

type entry[V any] struct {
	v        V
	deadline time.Time
}

// New returns a cache of at most size answers; a non-positive size means
// DefaultSize.
func New[V any](size int) *Cache[V] {
	if size <= 0 {
		size = DefaultSize
	}
	l, _ := simplelru.NewLRU[string, entry[V]](size, nil) // fails only for size ≤ 0
	return &Cache[V]{now: time.Now, lru: l}
}

// Key joins parts into one key, each prefixed with its length, so that no
// two different lists of parts make the same key.
func Key(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// Get returns the answer kept for key, if it has not expired.
func (c *Cache[V]) Get(key string) (V, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lru.Get(key)
	if !ok {
		var zero V
		return zero, false
	}
	if !now.Before(e.deadline) {
		c.lru.Remove(key)
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put keeps v for key during ttl, replacing any answer kept for it; a
// non-positive ttl keeps nothing. When the cache is full, the least
// recently used answer is dropped.
func (c *Cache[V]) Put(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	deadline := c.now().Add(ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Add(key, entry[V]{v: v, deadline: deadline})
}

// Do returns the answer kept for key or else runs fetch, once for all the
// callers asking for key at the same time, and keeps its answer for the
// duration fetch returns (Put). fetch runs apart from the callers, so it
// must bound itself; a caller whose ctx ends stops waiting and gets ctx's
// error, while the others still get the answer.
func (c *Cache[V]) Do(ctx context.Context, key string, fetch func() (V, time.Duration)) (V, error) {
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	ch := c.flight.DoChan(key, func() (any, error) {
		// A fetch that finished since Get kept its answer: use it.
		if v, ok := c.Get(key); ok {
			return v, nil
		}
		v, ttl := fetch()
		c.Put(key, v, ttl)
		return v, nil
	})
	select {
	case r := <-ch:
		v, _ := r.Val.(V) // a nil interface for a nil answer of an interface type
		return v, nil
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// Len returns the number of answers kept, expired ones included until they
// are dropped.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
