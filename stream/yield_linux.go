package stream

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// yieldEvery is how long a writer writes without a pause before it lets
// the Go scheduler poll the network; yieldWait bounds the pause, should
// every P stay busy with other goroutines so that no poll comes soon.
const (
	yieldEvery = 500 * time.Microsecond
	yieldWait  = time.Millisecond
)

// yielder lets a busy writer step aside so that network input is read while
// it writes. Go's scheduler polls the network only when no goroutine is
// runnable, or from its monitor every 10 ms; a writer fanning one event out
// to thousands of sockets stays runnable for the whole burst, so on a server
// with one CPU (GOMAXPROCS 1) a publish request, a new stream or a broker
// message arriving then would wait for the burst to end, once for every such
// hop. yield makes the writer wait for a goroutine that a network poll alone
// can wake: it signals an eventfd in Go's netpoller and waits for the
// goroutine reading it, so whatever else the poll finds runs too. A yield
// costs a few microseconds, and never more than yieldWait.
type yielder struct {
	every   int64    // ns of work between two yields
	fd      int      // eventfd, written by yield
	f       *os.File // the same eventfd, read through the netpoller
	back    chan struct{}
	timer   *time.Timer
	last    int64 // Unix ns of the last yield or idle period
	pending bool  // the eventfd was signalled and back not yet received
}

// newYielder returns a yielder that yields after every ns of work.
func newYielder(every time.Duration) (*yielder, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	y := &yielder{every: int64(every), fd: fd, f: os.NewFile(uintptr(fd), "sluice-yield"), back: make(chan struct{}),
		timer: time.NewTimer(time.Hour)}
	y.timer.Stop()
	go y.loop()
	return y, nil
}

func (y *yielder) loop() {
	var b [8]byte
	for {
		if _, err := y.f.Read(b[:]); err != nil {
			close(y.back)
			return
		}
		y.back <- struct{}{}
	}
}

// rested records that the writer was idle at now: no yield is due.
func (y *yielder) rested(now int64) { y.last = now }

// maybe yields if the writer has worked for y.every since it last did or
// was idle.
func (y *yielder) maybe(now int64) {
	if now-y.last < y.every {
		return
	}
	if !y.pending {
		var one [8]byte
		one[0] = 1
		if _, err := unix.Write(y.fd, one[:]); err != nil {
			y.last = now
			return
		}
		y.pending = true
	}
	y.timer.Reset(yieldWait)
	select {
	case <-y.back:
		y.pending = false
	case <-y.timer.C:
		// No poll came: back to work; the next yield takes the answer.
	}
	y.timer.Stop()
	y.last = time.Now().UnixNano()
}

// close stops the reading goroutine and releases the eventfd; the writer
// using y has returned. An answer that the writer did not wait for is taken
// here.
func (y *yielder) close() {
	y.timer.Stop()
	_ = y.f.Close()
	for range y.back {
	}
}
