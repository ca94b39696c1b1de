package main

import (
	"errors"
	"math/bits"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
)

// A histogram of durations in nanoseconds with 128 sub-buckets per power of
// two (under 1 % relative precision: 0.5 ms at 65 ms, fine enough to compare
// two brokers' p99 to the millisecond) and a fixed size, updated with
// atomics so that thousands of connection goroutines can record into it.
const (
	subBits    = 7
	subCount   = 1 << subBits                        // 128
	linearMax  = 2 * subCount                        // values below are exact
	numBuckets = linearMax + (63-subBits-1)*subCount // through math.MaxInt64
)

type histogram struct {
	counts [numBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

func bucketOf(v int64) int {
	if v < linearMax {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - subBits - 1 // >= 1
	top := int(uint64(v) >> shift)               // in [subCount, 2*subCount)
	return linearMax + (shift-1)*subCount + top - subCount
}

// bucketLow is the smallest value of bucket i.
func bucketLow(i int) int64 {
	if i < linearMax {
		return int64(i)
	}
	shift := (i-linearMax)/subCount + 1
	top := int64((i-linearMax)%subCount + subCount)
	return top << shift
}

func (h *histogram) record(v int64) {
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// quantile returns the value at quantile q (0 < q <= 1): the midpoint of the
// bucket holding the ceil(q·n)-th smallest sample, never above the maximum.
// It returns 0 for an empty histogram.
func (h *histogram) quantile(q float64) int64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.999999999)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo := bucketLow(i)
			mid := lo + (bucketLow(i+1)-lo)/2
			if i+1 >= numBuckets {
				mid = lo
			}
			return min(mid, h.max.Load())
		}
	}
	return h.max.Load()
}

// seqTracker counts lost and duplicated events of one subscriber on one
// channel, whose events carry consecutive sequence numbers from 0 in publish
// order (protocol.md §4 promises per-channel order). It holds O(1) state.
type seqTracker struct {
	next uint64 // the sequence number expected next
	lost uint64
	dup  uint64
}

func (t *seqTracker) see(seq uint64) {
	switch {
	case seq == t.next:
		t.next++
	case seq > t.next:
		t.lost += seq - t.next
		t.next = seq + 1
	default:
		t.dup++
	}
}

// finish counts as lost the events published but never received.
func (t *seqTracker) finish(published uint64) {
	if published > t.next {
		t.lost += published - t.next
		t.next = published
	}
}

var errNotLoopback = errors.New("sluice-bench: refusing a non-loopback target (127.0.0.0/8, ::1 or localhost only)")

// loopbackTarget checks that raw is an http URL of a loopback host and
// returns the IP to dial: the load this tool makes must never leave the
// machine.
func loopbackTarget(raw string) (*url.URL, net.IP, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme != "http" {
		return nil, nil, errors.New("sluice-bench: URL scheme must be http (plain HTTP on loopback)")
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return u, net.IPv4(127, 0, 0, 1), nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, nil, errNotLoopback
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	return u, ip, nil
}
