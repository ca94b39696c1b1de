package main

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Streams are read by a few epoll loops rather than a goroutine each, so
// that the load tool spends little of its core per delivery (one read, a
// share of an epoll_wait, no goroutine wake-up) and measures the server
// rather than itself. The goroutine that opened a stream waits for its end.

// readers are the epoll loops, one per P, started on first use.
var readers struct {
	once  sync.Once
	loops []*readLoop
	err   error
}

type readLoop struct {
	ep   int
	mu   sync.Mutex
	subs map[int32]*polled // by key, the epoll event's data
	next int32
	dead error // why the loop stopped; nothing is added then
}

// polled is a stream handed to a loop. mu orders the loop's reads against
// closing.
type polled struct {
	mu     sync.Mutex
	fd     int
	key    int32
	closed bool
	p      *body
	ended  chan error // receives the error that ended the stream, once
}

// readBody hands the rest of conn's body to an epoll loop and waits until
// the stream ends or ctx does.
func (b *bench) readBody(ctx context.Context, conn net.Conn, p *body) error {
	readers.once.Do(startReaders)
	if readers.err != nil {
		return readers.err
	}
	fd, err := dupFD(conn)
	if err != nil {
		return err
	}
	_ = conn.Close() // the duplicate keeps the socket; Go's netpoller lets go
	ps := &polled{fd: fd, p: p, ended: make(chan error, 1)}
	l := readers.loops[p.s.idx%len(readers.loops)]
	if err := l.add(ps); err != nil {
		_ = unix.Close(fd)
		return err
	}
	select {
	case err := <-ps.ended:
		return err
	case <-ctx.Done():
		ps.mu.Lock()
		l.closeLocked(ps)
		ps.mu.Unlock()
		return ctx.Err()
	}
}

func dupFD(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func startReaders() {
	for range runtime.GOMAXPROCS(0) {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			readers.err = err
			return
		}
		l := &readLoop{ep: ep, subs: map[int32]*polled{}}
		readers.loops = append(readers.loops, l)
		go l.run()
	}
}

func (l *readLoop) add(ps *polled) error {
	l.mu.Lock()
	if l.dead != nil {
		l.mu.Unlock()
		return l.dead
	}
	l.next++
	ps.key = l.next
	l.subs[ps.key] = ps
	l.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: ps.key}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, ps.fd, &ev); err != nil {
		l.mu.Lock()
		delete(l.subs, ps.key)
		l.mu.Unlock()
		return err
	}
	return nil
}

// closeLocked ends ps's registration and closes its socket, once; ps.mu is
// held.
func (l *readLoop) closeLocked(ps *polled) {
	if ps.closed {
		return
	}
	ps.closed = true
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, ps.fd, nil)
	_ = unix.Close(ps.fd)
	l.mu.Lock()
	delete(l.subs, ps.key)
	l.mu.Unlock()
}

// run reads every stream that has bytes, once per readiness (level
// triggered: what a read leaves is reported again), for the life of the
// process.
func (l *readLoop) run() {
	evs := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.EpollWait(l.ep, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil { // cannot happen with a valid epoll fd; end every stream
			l.mu.Lock()
			l.dead = err
			all := make([]*polled, 0, len(l.subs))
			for _, ps := range l.subs {
				all = append(all, ps)
			}
			l.mu.Unlock()
			for _, ps := range all {
				ps.mu.Lock()
				if !ps.closed {
					l.closeLocked(ps)
					ps.ended <- err
				}
				ps.mu.Unlock()
			}
			return
		}
		for _, ev := range evs[:n] {
			l.mu.Lock()
			ps := l.subs[ev.Fd]
			l.mu.Unlock()
			if ps != nil {
				l.service(ps, buf)
			}
		}
	}
}

func (l *readLoop) service(ps *polled, buf []byte) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return
	}
	n, err := unix.Read(ps.fd, buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	case err != nil:
	case n == 0:
		err = io.EOF
	default:
		err = ps.p.feed(buf[:n])
	}
	if err != nil {
		l.closeLocked(ps)
		ps.ended <- err
	}
}
