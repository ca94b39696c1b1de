package limits

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/problem"
)

// ConnsConfig sets the bounds of Conns; a zero field means no bound of that
// kind.
type ConnsConfig struct {
	// MaxPending bounds the connections of the whole server that have not
	// sent a complete request head: new ones, and idle keep-alive ones
	// waiting for their next request.
	MaxPending int
	// MaxPendingPerAddr bounds them per client address (an IPv6 address
	// counts by its /64, like RemoteIP).
	MaxPendingPerAddr int
	// Exempt reports peers not bounded per address, such as trusted
	// proxies, whose connections carry many clients; the total still
	// counts them. Nil: none.
	Exempt func(netip.Addr) bool
}

// Conns bounds the connections that have not sent a complete request head,
// per client address and in total, so that connections that send nothing
// (or trickle their headers) cannot take every file descriptor of the
// process. Install ConnState as an http.Server's ConnState hook.
//
// A connection counts from when it is accepted (http.StateNew) or becomes
// idle between two requests (http.StateIdle) until its request head has
// been read (http.StateActive), or until it is closed or hijacked. When a
// bound is passed, the oldest pending connection of the address (or of the
// whole server) is closed: a new connection is never refused, so a client
// that sends its request promptly always gets in, while connections that
// wait are the ones that go. A new connection closed this way first gets a
// 429 (per address) or 503 (in total) problem+json answer with
// Connection: close, when it is not TLS; an idle one is closed silently, as
// HTTP allows for an idle connection.
//
// How long a connection may stay pending is the http.Server's business
// (ReadHeaderTimeout, IdleTimeout). Conns is safe for concurrent use.
type Conns struct {
	cfg ConnsConfig

	mu     sync.Mutex
	byConn map[net.Conn]*pending
	byAddr map[string]*pendingList
	all    pendingList

	closed atomic.Int64
}

// pending is one counted connection, in two intrusive lists: the server's
// and its address's, oldest first.
type pending struct {
	c     net.Conn
	addr  *pendingList // nil when exempt
	key   string
	fresh bool                             // a new connection, not an idle one
	links [2]struct{ prev, next *pending } // in the lists of kind listAll, listAddr
}

// The kinds of pendingList, each using its own links of a pending.
const (
	listAll = iota
	listAddr
)

type pendingList struct {
	kind       int // listAll or listAddr
	head, tail *pending
	n          int
}

// NewConns returns a Conns for cfg.
func NewConns(cfg ConnsConfig) *Conns {
	return &Conns{cfg: cfg, byConn: make(map[net.Conn]*pending), byAddr: make(map[string]*pendingList)}
}

// ConnState is the http.Server ConnState hook.
func (cs *Conns) ConnState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		cs.add(c, true)
	case http.StateIdle:
		cs.add(c, false)
	default: // StateActive, StateHijacked, StateClosed
		cs.mu.Lock()
		if p := cs.byConn[c]; p != nil {
			cs.remove(p)
		}
		cs.mu.Unlock()
	}
}

// Pending returns the number of connections counted now.
func (cs *Conns) Pending() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.all.n
}

// Closed returns the number of connections closed so far for passing a
// bound.
func (cs *Conns) Closed() int64 { return cs.closed.Load() }

func (cs *Conns) add(c net.Conn, fresh bool) {
	if cs.cfg.MaxPending <= 0 && cs.cfg.MaxPendingPerAddr <= 0 {
		return
	}
	type victim struct {
		p      *pending
		status int
	}
	var victims []victim
	cs.mu.Lock()
	if cs.byConn[c] != nil {
		cs.mu.Unlock()
		return
	}
	p := &pending{c: c, fresh: fresh}
	if cs.cfg.MaxPendingPerAddr > 0 {
		a, key := connAddr(c)
		if !a.IsValid() || cs.cfg.Exempt == nil || !cs.cfg.Exempt(a) {
			p.key = key
			p.addr = cs.byAddr[key]
			if p.addr == nil {
				p.addr = &pendingList{kind: listAddr}
				cs.byAddr[key] = p.addr
			}
		}
	}
	cs.byConn[c] = p
	cs.all.push(p)
	if p.addr != nil {
		p.addr.push(p)
		for p.addr.n > cs.cfg.MaxPendingPerAddr {
			v := p.addr.head
			victims = append(victims, victim{v, http.StatusTooManyRequests})
			cs.remove(v)
		}
	}
	for cs.cfg.MaxPending > 0 && cs.all.n > cs.cfg.MaxPending {
		v := cs.all.head
		victims = append(victims, victim{v, http.StatusServiceUnavailable})
		cs.remove(v)
	}
	cs.mu.Unlock()
	for _, v := range victims {
		cs.closed.Add(1)
		if v.p.fresh {
			// The hook runs in the accept loop for a new connection: the
			// answer is written elsewhere, and never waits long.
			go refuse(v.p.c, v.status)
		} else {
			_ = v.p.c.Close()
		}
	}
}

// remove takes p out of every list; mu is held.
func (cs *Conns) remove(p *pending) {
	delete(cs.byConn, p.c)
	cs.all.drop(p)
	if p.addr != nil {
		p.addr.drop(p)
		if p.addr.n == 0 {
			delete(cs.byAddr, p.key)
		}
	}
}

// push appends p to l.
func (l *pendingList) push(p *pending) {
	lk := &p.links[l.kind]
	lk.prev, lk.next = l.tail, nil
	if l.tail != nil {
		l.tail.links[l.kind].next = p
	} else {
		l.head = p
	}
	l.tail = p
	l.n++
}

// drop takes p out of l.
func (l *pendingList) drop(p *pending) {
	lk := &p.links[l.kind]
	if lk.prev != nil {
		lk.prev.links[l.kind].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		lk.next.links[l.kind].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = nil, nil
	l.n--
}

// connAddr returns the peer address of c and the key it is counted under.
func connAddr(c net.Conn) (netip.Addr, string) {
	ra := c.RemoteAddr()
	if ra == nil {
		return netip.Addr{}, ""
	}
	if tcp, ok := ra.(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(tcp.IP)
		return addrKey(a.Unmap())
	}
	ap, err := netip.ParseAddrPort(ra.String())
	if err != nil {
		return netip.Addr{}, ra.String()
	}
	return addrKey(ap.Addr().Unmap())
}

func addrKey(a netip.Addr) (netip.Addr, string) {
	if !a.IsValid() {
		return a, ""
	}
	if a.Is4() {
		return a, a.String()
	}
	pfx, err := a.WithZone("").Prefix(64)
	if err != nil {
		return a, a.String()
	}
	return a, pfx.String()
}

// refusalWait is the time a refused connection is told to wait.
const refusalWait = time.Second

// refuse answers a connection that has not sent a complete request with a
// problem and closes it. TLS connections are closed without an answer (it
// would take a handshake).
func refuse(c net.Conn, status int) {
	defer c.Close()
	if _, isTLS := c.(*tls.Conn); isTLS {
		return
	}
	detail := "this address has too many connections that have not sent a request; send the request at once, or retry later"
	if status == http.StatusServiceUnavailable {
		detail = "the server has too many connections that have not sent a request; retry later"
	}
	body, _ := json.Marshal(problem.New(status, problem.CodeTooManyPending, detail))
	body = append(body, '\n')
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: application/problem+json\r\n" +
		"Cache-Control: no-store\r\n" +
		"Retry-After: " + problem.RetryAfterSeconds(refusalWait) + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write(append([]byte(head), body...))
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
}
