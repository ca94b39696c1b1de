// Package hub is the local subscriber registry shared by every broker: a
// sharded map from channel to subscribers, and a fan-out that hands one
// shared *event.Event to each of them.
//
// It is public for the authors of other brokers: a broker.Broker
// implementation keeps its process's subscribers in a Hub (Subscribe adds
// them, the broker's receiving side calls Fanout, which calls each
// subscriber's Deliver), as broker/memory and
// broker/redis do; docs/architecture.md shows how a broker is added.
package hub

import (
	"hash/maphash"
	"sync"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

const shards = 64

// Hub is a concurrency-safe registry of local subscribers by channel. The
// zero Hub is not usable; call New.
type Hub struct {
	seed   maphash.Seed
	shards [shards]shard
}

type shard struct {
	mu   sync.RWMutex
	subs map[string]*set
}

// set keeps subscribers in a slice for fast iteration, with an index for O(1)
// removal.
type set struct {
	list []broker.Subscriber
	idx  map[broker.Subscriber]int
}

// New returns an empty Hub.
func New() *Hub {
	h := &Hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].subs = make(map[string]*set)
	}
	return h
}

func (h *Hub) shard(ch string) *shard {
	return &h.shards[maphash.String(h.seed, ch)%shards]
}

// Add registers s on ch. It reports whether s is the channel's first local
// subscriber. Adding the same subscriber twice is a no-op.
func (h *Hub) Add(ch channel.Name, s broker.Subscriber) (first bool) {
	sh := h.shard(ch.String())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.subs[ch.String()]
	if st == nil {
		st = &set{idx: make(map[broker.Subscriber]int, 1)}
		sh.subs[ch.String()] = st
		first = true
	}
	if _, ok := st.idx[s]; !ok {
		st.idx[s] = len(st.list)
		st.list = append(st.list, s)
	}
	return first
}

// Remove unregisters s from ch. It reports whether the channel has no local
// subscriber left.
func (h *Hub) Remove(ch channel.Name, s broker.Subscriber) (last bool) {
	sh := h.shard(ch.String())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.subs[ch.String()]
	if st == nil {
		return false
	}
	i, ok := st.idx[s]
	if !ok {
		return false
	}
	end := len(st.list) - 1
	if i != end {
		st.list[i] = st.list[end]
		st.idx[st.list[i]] = i
	}
	st.list[end] = nil
	st.list = st.list[:end]
	delete(st.idx, s)
	if len(st.list) == 0 {
		delete(sh.subs, ch.String())
		return true
	}
	return false
}

// Has reports whether ch has a local subscriber.
func (h *Hub) Has(ch channel.Name) bool {
	sh := h.shard(ch.String())
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.subs[ch.String()] != nil
}

// Channels returns every channel that has a local subscriber.
func (h *Hub) Channels() []string {
	var out []string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for ch := range sh.subs {
			out = append(out, ch)
		}
		sh.mu.RUnlock()
	}
	return out
}

// Fanout hands ev to every local subscriber of its channel and returns how
// many it reached. Subscribers must not block (broker.Subscriber).
func (h *Hub) Fanout(ev *event.Event) int {
	sh := h.shard(ev.Channel.String())
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	st := sh.subs[ev.Channel.String()]
	if st == nil {
		return 0
	}
	for _, s := range st.list {
		s.Deliver(ev)
	}
	return len(st.list)
}
