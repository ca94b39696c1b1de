// Package limits bounds what one client may take from a Sluice instance:
// open streams per user and per tenant, new streams per second per client
// address, and the size of request headers and URLs.
//
// A Limiter is the stream server's Admitter (Admit runs after
// authentication, channel resolution and the tenant gate, before a stream
// opens) and an HTTP middleware for the size limits, which run before
// anything else reads the request.
//
// Counters are sharded by key so that concurrent opens rarely contend, and
// the per-address rate table is bounded: a flood of distinct addresses
// evicts idle buckets first and the least recently seen ones after that, so
// it cannot grow memory without bound.
package limits

import (
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/problem"
)

// DefaultMaxAddrs is the number of client addresses whose rate is tracked
// when Config.MaxAddrs is zero.
const DefaultMaxAddrs = 1 << 16

// Config sets the limits; a zero or negative field means no limit of that
// kind (WithDefaults sets zero fields to the defaults).
type Config struct {
	MaxStreamsPerUser   int     // open streams per (tenant, user)
	MaxStreamsPerTenant int     // open streams per tenant
	ConnRate            float64 // new streams per second per client address
	ConnBurst           int     // burst allowance of ConnRate
	MaxHeaderBytes      int     // request headers, in bytes → 431
	MaxURLBytes         int     // request target, in bytes → 414

	// MaxAddrs bounds how many client addresses the rate limit tracks at
	// once (zero: DefaultMaxAddrs). When the table is full, addresses whose
	// bucket has refilled are forgotten first (losing nothing: a full bucket
	// is what a new address gets), then the least recently seen ones.
	MaxAddrs int

	// ClientAddr returns the key a request's rate is counted under. Nil means
	// the IP of r.RemoteAddr, an IPv6 address counted by its /64 (one host
	// usually holds a whole /64). X-Forwarded-For is not trusted by default:
	// set ClientAddr only behind a proxy that overwrites that header.
	ClientAddr func(r *http.Request) string
}

// maxWait caps the wait a refusal suggests (a tiny ConnRate).
const maxWait = 24 * time.Hour

// nShards is the number of shards of each table; a power of two.
const nShards = 64

// Limiter enforces Config. It is safe for concurrent use.
type Limiter struct {
	cfg     Config
	seed    maphash.Seed
	users   *counters // nil without MaxStreamsPerUser
	tenants *counters // nil without MaxStreamsPerTenant
	rate    *buckets  // nil without ConnRate
	now     func() time.Time
}

// New returns a Limiter for cfg. Negative limits count as zero (no limit); a
// ConnRate without ConnBurst allows a burst of one.
func New(cfg Config) *Limiter {
	l := &Limiter{cfg: cfg, seed: maphash.MakeSeed(), now: time.Now}
	if cfg.MaxStreamsPerUser > 0 {
		l.users = &counters{}
	}
	if cfg.MaxStreamsPerTenant > 0 {
		l.tenants = &counters{}
	}
	if cfg.ConnRate > 0 && !math.IsInf(cfg.ConnRate, 1) && !math.IsNaN(cfg.ConnRate) {
		burst := max(cfg.ConnBurst, 1)
		maxAddrs := cfg.MaxAddrs
		if maxAddrs <= 0 {
			maxAddrs = DefaultMaxAddrs
		}
		l.rate = &buckets{rate: cfg.ConnRate, burst: float64(burst), perShard: max(maxAddrs/nShards, 1)}
	}
	if cfg.ClientAddr == nil {
		l.cfg.ClientAddr = RemoteIP
	}
	return l
}

// Refusal is the error Admit returns: a 429 problem, and how long the client
// should wait before trying again when that is known (zero otherwise).
// problem.As finds the problem in it, and problem.WriteError sends its wait
// as a Retry-After header (problem.RetryAfter).
type Refusal struct {
	*problem.Problem
	After time.Duration
}

// Unwrap returns the problem.
func (r *Refusal) Unwrap() error { return r.Problem }

// RetryAfter returns how long to wait before retrying; zero when unknown.
func (r *Refusal) RetryAfter() time.Duration { return r.After }

// Admit implements stream.Admitter. It takes one token of the client
// address's bucket, then one slot of the user's and one of the tenant's
// streams, and returns a release that gives the slots back; release may be
// called any number of times. A refusal is a *Refusal holding a 429 problem
// (problem.CodeRateLimited or problem.CodeTooManyStreams).
func (l *Limiter) Admit(r *http.Request, p auth.Principal) (release func(), err error) {
	if l.rate != nil {
		if wait, ok := l.rate.take(l.seed, l.cfg.ClientAddr(r), l.now()); !ok {
			return nil, &Refusal{
				Problem: problem.New(http.StatusTooManyRequests, problem.CodeRateLimited,
					"too many new streams from this address; retry in "+problem.RetryAfterSeconds(wait)+" s"),
				After: wait,
			}
		}
	}
	var userKey string
	if l.users != nil {
		userKey = p.Tenant + "\x00" + p.User
		if !l.users.acquire(l.seed, userKey, l.cfg.MaxStreamsPerUser) {
			return nil, &Refusal{Problem: problem.New(http.StatusTooManyRequests, problem.CodeTooManyStreams,
				"this user has "+strconv.Itoa(l.cfg.MaxStreamsPerUser)+" streams open, the most allowed; close one first")}
		}
	}
	if l.tenants != nil && !l.tenants.acquire(l.seed, p.Tenant, l.cfg.MaxStreamsPerTenant) {
		if l.users != nil {
			l.users.release(l.seed, userKey)
		}
		return nil, &Refusal{Problem: problem.New(http.StatusTooManyRequests, problem.CodeTooManyStreams,
			"this tenant has the most streams open that this instance allows; retry later")}
	}
	if l.users == nil && l.tenants == nil {
		return func() {}, nil
	}
	a := &admission{l: l, userKey: userKey, tenant: p.Tenant}
	return a.release, nil
}

// admission is what an admitted stream holds until it ends: the keys of
// the slots to give back, and not the whole principal (an open stream
// keeps it for its life).
type admission struct {
	l       *Limiter
	userKey string
	tenant  string
	done    atomic.Bool
}

// release gives the slots back, once.
func (a *admission) release() {
	if !a.done.CompareAndSwap(false, true) {
		return
	}
	if a.l.users != nil {
		a.l.users.release(a.l.seed, a.userKey)
	}
	if a.l.tenants != nil {
		a.l.tenants.release(a.l.seed, a.tenant)
	}
}

// Open returns the number of streams l counts as open for user in tenant and
// for the whole tenant (zero for a limit that is off).
func (l *Limiter) Open(tenant, user string) (userStreams, tenantStreams int) {
	if l.users != nil {
		userStreams = l.users.get(l.seed, tenant+"\x00"+user)
	}
	if l.tenants != nil {
		tenantStreams = l.tenants.get(l.seed, tenant)
	}
	return userStreams, tenantStreams
}

// Middleware refuses requests whose request target exceeds MaxURLBytes
// (414, problem.CodeURITooLong) or whose header lines exceed MaxHeaderBytes in all
// (431, problem.CodeHeadersTooLarge), counting the name and the value of
// each line, the Host line included. Refusals are problem+json bodies and
// the request is not read further.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	if l.cfg.MaxURLBytes <= 0 && l.cfg.MaxHeaderBytes <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := l.cfg.MaxURLBytes; n > 0 && targetLen(r) > n {
			problem.Write(w, problem.New(http.StatusRequestURITooLong, problem.CodeURITooLong,
				"the request target exceeds "+strconv.Itoa(n)+" bytes"))
			return
		}
		if n := l.cfg.MaxHeaderBytes; n > 0 && headerLen(r, n) > n {
			problem.Write(w, problem.New(http.StatusRequestHeaderFieldsTooLarge, problem.CodeHeadersTooLarge,
				"the request headers exceed "+strconv.Itoa(n)+" bytes"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// targetLen is the length of the request target as the client sent it.
func targetLen(r *http.Request) int {
	if r.RequestURI != "" {
		return len(r.RequestURI)
	}
	if r.URL == nil {
		return 0
	}
	return len(r.URL.RequestURI())
}

// headerLen sums the name and value lengths of every header line; it stops
// counting once past limit.
func headerLen(r *http.Request, limit int) int {
	n := 0
	if r.Host != "" {
		n += len("Host") + len(r.Host)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v)
		}
		if n > limit {
			return n
		}
	}
	return n
}

// RemoteIP is the default Config.ClientAddr: the IP of r.RemoteAddr, an IPv4
// address (IPv4-mapped IPv6 included) as is, an IPv6 address as its /64. A
// RemoteAddr that is not host:port is used whole.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	pfx, err := a.WithZone("").Prefix(64)
	if err != nil {
		return host
	}
	return pfx.String()
}

// counters is a sharded map of open-stream counts; an entry exists only
// while its count is positive.
type counters struct {
	shards [nShards]counterShard
}

type counterShard struct {
	mu sync.Mutex
	m  map[string]int
	_  [40]byte // keep shards on separate cache lines
}

func (c *counters) shard(seed maphash.Seed, key string) *counterShard {
	return &c.shards[maphash.String(seed, key)&(nShards-1)]
}

// acquire adds one to key's count unless it is already at limit.
func (c *counters) acquire(seed maphash.Seed, key string, limit int) bool {
	s := c.shard(seed, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.m[key]
	if n >= limit {
		return false
	}
	if s.m == nil {
		s.m = make(map[string]int)
	}
	s.m[key] = n + 1
	return true
}

func (c *counters) release(seed maphash.Seed, key string) {
	s := c.shard(seed, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch n := s.m[key]; {
	case n > 1:
		s.m[key] = n - 1
	case n == 1:
		delete(s.m, key)
	}
}

func (c *counters) get(seed maphash.Seed, key string) int {
	s := c.shard(seed, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key]
}

// buckets is a sharded, bounded table of token buckets, one per client
// address.
type buckets struct {
	rate     float64 // tokens per second
	burst    float64 // bucket size
	perShard int     // entries per shard at most
	shards   [nShards]bucketShard
}

type bucketShard struct {
	mu sync.Mutex
	m  map[string]*bucket
	_  [40]byte
}

type bucket struct {
	tokens float64
	last   time.Time // when tokens was computed
}

// take removes one token from key's bucket. When there is none it returns
// false and how long until there is one.
func (b *buckets) take(seed maphash.Seed, key string, now time.Time) (time.Duration, bool) {
	s := &b.shards[maphash.String(seed, key)&(nShards-1)]
	s.mu.Lock()
	defer s.mu.Unlock()
	bk := s.m[key]
	if bk == nil {
		if s.m == nil {
			s.m = make(map[string]*bucket)
		}
		if len(s.m) >= b.perShard {
			b.evict(s, now)
		}
		s.m[key] = &bucket{tokens: b.burst - 1, last: now}
		return 0, true
	}
	if el := now.Sub(bk.last).Seconds(); el > 0 {
		bk.tokens = min(b.burst, bk.tokens+el*b.rate)
		bk.last = now
	}
	if bk.tokens >= 1 {
		bk.tokens--
		return 0, true
	}
	secs := min((1-bk.tokens)/b.rate, maxWait.Seconds())
	return max(time.Duration(secs*float64(time.Second)), time.Millisecond), false
}

// evict makes room in a full shard: it forgets every bucket that has
// refilled (a new bucket is full, so nothing is lost), and when none has,
// the least recently used one.
func (b *buckets) evict(s *bucketShard, now time.Time) {
	var oldestKey string
	var oldest time.Time
	freed := 0
	for k, bk := range s.m {
		if bk.tokens+now.Sub(bk.last).Seconds()*b.rate >= b.burst {
			delete(s.m, k)
			freed++
			continue
		}
		if oldestKey == "" || bk.last.Before(oldest) {
			oldestKey, oldest = k, bk.last
		}
	}
	if freed == 0 && oldestKey != "" {
		delete(s.m, oldestKey)
	}
}

// size returns the number of tracked addresses.
func (b *buckets) size() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// The defaults of protocol.md §10 that WithDefaults fills in.
const (
	DefaultMaxStreamsPerUser   = 64
	DefaultMaxStreamsPerTenant = 20000
	DefaultConnRate            = 50
	DefaultConnBurst           = 100
	DefaultMaxHeaderBytes      = 16384
	DefaultMaxURLBytes         = 8192
)

// WithDefaults returns c with each zero limit set to its default; a negative
// one stays, meaning no limit of that kind.
func (c Config) WithDefaults() Config {
	if c.MaxStreamsPerUser == 0 {
		c.MaxStreamsPerUser = DefaultMaxStreamsPerUser
	}
	if c.MaxStreamsPerTenant == 0 {
		c.MaxStreamsPerTenant = DefaultMaxStreamsPerTenant
	}
	if c.ConnRate == 0 {
		c.ConnRate = DefaultConnRate
	}
	if c.ConnBurst == 0 {
		c.ConnBurst = DefaultConnBurst
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxURLBytes == 0 {
		c.MaxURLBytes = DefaultMaxURLBytes
	}
	return c
}
