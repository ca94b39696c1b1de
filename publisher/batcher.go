package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// ErrClosed is returned by Batcher.Add after Close.
var ErrClosed = errors.New("publisher: batcher closed")

// BatchOptions configure a Batcher. Zero values take the defaults.
type BatchOptions struct {
	MaxEvents int           // events per request, at most MaxBatch (default 100)
	MaxBytes  int           // encoded events per request (default 1 MiB; keep below SLUICE_MAX_BODY_BYTES)
	MaxDelay  time.Duration // longest an event waits for its batch to fill (default 50 ms)
	// OnError, when set, is called (from the Batcher's goroutine) with the
	// events a request failed to publish and the error.
	OnError func(evs []Event, err error)
}

// Batcher accumulates events and publishes them in batches: a request goes
// out when MaxEvents are queued, when MaxBytes would be exceeded, or MaxDelay
// after the first event of the batch, whichever comes first. One goroutine
// sends the batches in order, so events of a channel keep the order in which
// they were added. Add blocks while a batch is being sent and the next one
// is full: the gateway's pace bounds the memory held.
//
// A batch is all or nothing on the gateway, so Add checks channel and event
// names first, and when the gateway refuses a batch of several events as
// invalid (400 or 413), the Batcher sends each of its events alone, so that
// one bad event does not take the others with it.
//
// It is safe for concurrent use. Close it to send what is queued.
type Batcher struct {
	c    *Client
	o    BatchOptions
	in   chan queued
	cmd  chan command
	done chan struct{}

	mu     sync.RWMutex // held for reading by Add while it queues
	closed bool

	errMu  sync.Mutex
	errs   []error // since the last Flush, at most maxErrs
	failed int     // requests failed since the last Flush
}

// command asks the loop to send what is queued and reply with the errors
// since the last command; stop ends the loop afterwards.
type command struct {
	reply chan error
	stop  bool
}

type queued struct {
	ev   Event
	size int
}

const maxErrs = 8

// NewBatcher returns a Batcher that publishes through c and starts its
// goroutine; Close stops it.
func (c *Client) NewBatcher(o BatchOptions) *Batcher {
	switch {
	case o.MaxEvents <= 0:
		o.MaxEvents = 100
	case o.MaxEvents > MaxBatch:
		o.MaxEvents = MaxBatch
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 20
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 50 * time.Millisecond
	}
	b := &Batcher{c: c, o: o, in: make(chan queued, o.MaxEvents), cmd: make(chan command), done: make(chan struct{})}
	go b.loop()
	return b
}

// Add queues one event. Its data is encoded at once, so the caller may reuse
// it. Malformed channel or event names are refused here with an *Error, as
// the gateway would; every other failure is reported by OnError, Flush and
// Close.
func (b *Batcher) Add(ctx context.Context, channelName, eventType string, data any) error {
	if _, err := channel.Parse(channelName); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedChannel, Title: "Bad Request", Detail: err.Error()}
	}
	if err := event.ValidType(eventType); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidEvent, Title: "Bad Request", Detail: "event: " + err.Error()}
	}
	raw, ok := data.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			return &Error{Status: http.StatusBadRequest, Code: CodeInvalidEvent, Title: "Bad Request", Detail: "data: " + err.Error()}
		}
	}
	q := queued{ev: Event{Channel: channelName, Type: eventType, Data: raw}, size: len(channelName) + len(eventType) + len(raw) + 40}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	select {
	case b.in <- q:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush sends what is queued and returns the errors of every batch that
// failed since the previous Flush (nil when all were published).
func (b *Batcher) Flush(ctx context.Context) error {
	return b.do(ctx, false)
}

func (b *Batcher) do(ctx context.Context, stop bool) error {
	reply := make(chan error, 1)
	select {
	case b.cmd <- command{reply, stop}:
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends what is queued, stops the Batcher and returns what Flush
// would. Add returns ErrClosed afterwards, and so does a second Close. When
// ctx ends first, the Batcher still sends what is queued, in the background.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock() // waits for every Add that is queueing
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.closed = true
	b.mu.Unlock()
	return b.do(ctx, true)
}

func (b *Batcher) loop() {
	defer close(b.done)
	var (
		batch []Event
		bytes int
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	send := func() {
		timer.Stop()
		if len(batch) > 0 {
			b.publish(batch)
		}
		batch, bytes = nil, 0
	}
	add := func(q queued) {
		if len(batch) > 0 && bytes+q.size > b.o.MaxBytes {
			send()
		}
		if len(batch) == 0 {
			timer.Reset(b.o.MaxDelay)
		}
		batch = append(batch, q.ev)
		bytes += q.size
		if len(batch) >= b.o.MaxEvents {
			send()
		}
	}
	for {
		select {
		case q := <-b.in:
			add(q)
		case <-timer.C:
			send()
		case c := <-b.cmd:
			// Take everything Add has queued so far.
			for drained := false; !drained; {
				select {
				case q := <-b.in:
					add(q)
				default:
					drained = true
				}
			}
			send()
			c.reply <- b.takeErrors()
			if c.stop {
				return
			}
		}
	}
}

// publish sends one batch; when the gateway refuses a batch of several
// events as invalid, each is sent alone.
func (b *Batcher) publish(batch []Event) {
	ctx := context.Background()
	_, err := b.c.PublishBatch(ctx, batch)
	var e *Error
	if err != nil && len(batch) > 1 && errors.As(err, &e) &&
		(e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge) {
		for _, ev := range batch {
			if _, err := b.c.PublishBatch(ctx, []Event{ev}); err != nil {
				b.fail([]Event{ev}, err)
			}
		}
		return
	}
	if err != nil {
		b.fail(batch, err)
	}
}

func (b *Batcher) fail(evs []Event, err error) {
	if b.o.OnError != nil {
		b.o.OnError(evs, err)
	}
	b.errMu.Lock()
	b.failed++
	if len(b.errs) < maxErrs {
		b.errs = append(b.errs, err)
	}
	b.errMu.Unlock()
}

func (b *Batcher) takeErrors() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if b.failed == 0 {
		return nil
	}
	err := &BatchError{Failed: b.failed, Errs: b.errs}
	b.errs, b.failed = nil, 0
	return err
}

// BatchError reports the requests of a Batcher that failed since the last
// Flush.
type BatchError struct {
	Failed int     // requests that failed
	Errs   []error // the first few of their errors
}

// Error implements error.
func (e *BatchError) Error() string {
	s := "publisher: " + strconv.Itoa(e.Failed) + " batch request(s) failed"
	if len(e.Errs) > 0 {
		s += "; first: " + e.Errs[0].Error()
	}
	return s
}

// Unwrap returns the errors kept, so errors.As finds an *Error among them.
func (e *BatchError) Unwrap() []error { return e.Errs }
