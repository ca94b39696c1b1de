// Package faultcheck checks the delivery promise of Sluice (protocol.md §4, §5, §9)
// from the outside: every acknowledged event reaches every open stream of its
// channel exactly once and in order, or that stream receives a stream-reset
// covering it.
//
// A run is recorded in a Log: the publishes, each with a sequence number per
// channel (1, 2, 3, …) and its outcome, and per subscriber what it saw in
// the order it saw it (stream-open, events identified by the sequence number
// in their data, stream-reset). A Recorder builds the Log while publishers
// and subscribers run concurrently; Check judges it and returns a Report that
// keeps silent loss, duplicates, reorders, resets and covered events apart.
//
// The rules Check applies, per subscriber and channel of its stream:
//
//   - The subscriber's window starts after its first stream-open: publishes
//     sent before it are not expected.
//   - An acknowledged publish in the window that was not received is covered
//     when a stream-reset of that channel arrived between the last event of
//     the channel received before the missing one and the first received
//     after it; otherwise it is silent loss.
//   - A publish of unknown outcome (timeout, broken connection) may be
//     missing, but like any other it must not arrive twice or out of order.
//   - An event received twice is a duplicate; one received after an event of
//     a higher sequence number of its channel is a reorder.
//   - An event whose publish was refused, or that was never published, or
//     that belongs to a channel the stream did not ask for, is a phantom.
package faultcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
)

// Outcome is what a publisher learned of a publish.
type Outcome uint8

// Outcomes of a publish.
const (
	// Unknown: no answer (a timeout, a broken connection). The event may or
	// may not have been published. A publish still in flight is Unknown.
	Unknown Outcome = iota
	// Acked: 200 with one id per event. The events must be delivered.
	Acked
	// Failed: definitely refused (a problem answer such as 503, or a
	// connection that could not be made). The events must not be delivered.
	Failed
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// Payload is the data of a checked event: its channel and sequence number.
type Payload struct {
	Seq int    `json:"seq"`
	Ch  string `json:"ch"`
}

// ErrNotPayload is returned by ParsePayload for data that is not a Payload.
var ErrNotPayload = errors.New("faultcheck: event data is not {\"seq\": n, \"ch\": …}")

// ParsePayload reads the Payload of an event's data.
func ParsePayload(data string) (Payload, error) {
	var p Payload
	if err := json.Unmarshal([]byte(data), &p); err != nil || p.Seq < 1 || p.Ch == "" {
		return Payload{}, fmt.Errorf("%w: %.80q", ErrNotPayload, data)
	}
	return p, nil
}

// Publish is one event as a publisher sent it. The events of one request (a
// batch) share At and Outcome.
type Publish struct {
	Channel string
	Seq     int
	Outcome Outcome
	// At is the logical time the request was first sent (see Recorder).
	At uint64
}

// Kind is the kind of an Item.
type Kind uint8

// Kinds of Item.
const (
	// Open is a stream-open: a connection was established.
	Open Kind = iota + 1
	// Event is an event of Channel with sequence number Seq.
	Event
	// Reset is a stream-reset: of Channel, or of every channel of the
	// stream when Channel is empty.
	Reset
	// End is the end of a connection (stream-error, EOF, a refused
	// request): the subscriber reconnects.
	End
)

// Item is one thing a subscriber saw, in the order it saw them.
type Item struct {
	Kind    Kind
	Channel string
	Seq     int
	At      uint64 // logical time (see Recorder)
}

// Subscriber is what one subscriber saw over all its connections.
type Subscriber struct {
	Name     string
	Channels []string
	Items    []Item
}

// Log is a recorded run.
type Log struct {
	Publishes   []Publish
	Subscribers []Subscriber
}

// Report is the judgement of a Log. The counts are kept apart: a run passes
// when SilentLoss, Duplicates, Reorders and Phantoms are 0; Resets and
// Covered say how much the clients were told they missed.
type Report struct {
	// Delivered counts distinct (subscriber, event) pairs received.
	Delivered int
	// SilentLoss counts acknowledged events in a subscriber's window that it
	// neither received nor was told of by a stream-reset.
	SilentLoss int
	// Duplicates counts events received again by the same subscriber.
	Duplicates int
	// Reorders counts events received after a higher sequence number of
	// their channel.
	Reorders int
	// Resets counts stream-resets received.
	Resets int
	// Covered counts acknowledged events missed but covered by a reset.
	Covered int
	// Phantoms counts events received that were refused, never published,
	// or of a channel the stream did not ask for.
	Phantoms int
	// UnknownMissed counts events of unknown outcome in a window that were
	// not received (allowed).
	UnknownMissed int
	// Reconnects counts stream-opens after each subscriber's first.
	Reconnects int
	// Examples describes the first few faults found, for the test log.
	Examples []string
}

// maxExamples bounds Report.Examples.
const maxExamples = 20

// String returns the counts in the form the fault tests log:
// "delivered=… silent_loss=… duplicates=… reorders=… resets=… covered=…".
func (r Report) String() string {
	return fmt.Sprintf("delivered=%d silent_loss=%d duplicates=%d reorders=%d resets=%d covered=%d",
		r.Delivered, r.SilentLoss, r.Duplicates, r.Reorders, r.Resets, r.Covered)
}

// OK reports whether the run kept the promise: no silent loss, duplicate,
// reorder or phantom.
func (r Report) OK() bool {
	return r.SilentLoss == 0 && r.Duplicates == 0 && r.Reorders == 0 && r.Phantoms == 0
}

func (r *Report) example(format string, args ...any) {
	if len(r.Examples) < maxExamples {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// Check judges l (see the package documentation for the rules).
func Check(l Log) Report {
	var rep Report
	// Every publish by channel and sequence number.
	pubs := map[string]map[int]Publish{}
	for _, p := range l.Publishes {
		m := pubs[p.Channel]
		if m == nil {
			m = map[int]Publish{}
			pubs[p.Channel] = m
		}
		m[p.Seq] = p
	}
	for _, s := range l.Subscribers {
		checkSubscriber(&rep, s, pubs)
	}
	return rep
}

func checkSubscriber(rep *Report, s Subscriber, pubs map[string]map[int]Publish) {
	// The window: publishes sent after the first stream-open. A subscriber
	// that never opened is held to every publish.
	var openedAt uint64
	opens := 0
	for _, it := range s.Items {
		switch it.Kind {
		case Open:
			if opens == 0 {
				openedAt = it.At
			}
			opens++
		case Reset:
			rep.Resets++
		case Event:
			if !slices.Contains(s.Channels, it.Channel) {
				rep.Phantoms++
				rep.example("%s: event %s#%d of a channel it did not subscribe to", s.Name, it.Channel, it.Seq)
			}
		}
	}
	if opens == 0 {
		rep.example("%s: never opened a stream", s.Name)
	} else {
		rep.Reconnects += opens - 1
	}

	seenCh := map[string]bool{}
	for _, ch := range s.Channels {
		if seenCh[ch] {
			continue
		}
		seenCh[ch] = true
		checkChannel(rep, s, ch, openedAt, pubs[ch])
	}
}

// gap is the range of sequence numbers a reset covers: (lo, hi), exclusive.
type gap struct{ lo, hi int }

func checkChannel(rep *Report, s Subscriber, ch string, openedAt uint64, pubs map[int]Publish) {
	// The channel's events in arrival order, with the resets that cover it.
	type mark struct {
		reset bool
		seq   int
	}
	var marks []mark
	for _, it := range s.Items {
		switch {
		case it.Kind == Event && it.Channel == ch:
			marks = append(marks, mark{seq: it.Seq})
		case it.Kind == Reset && (it.Channel == "" || it.Channel == ch):
			marks = append(marks, mark{reset: true})
		}
	}

	received := map[int]bool{}
	highest, last := 0, 0
	var gaps []gap
	for i, m := range marks {
		if m.reset {
			g := gap{lo: last, hi: math.MaxInt}
			for _, n := range marks[i+1:] {
				if !n.reset {
					g.hi = n.seq
					break
				}
			}
			gaps = append(gaps, g)
			continue
		}
		last = m.seq
		p, ok := pubs[m.seq]
		switch {
		case !ok:
			rep.Phantoms++
			rep.example("%s: %s#%d received but never published", s.Name, ch, m.seq)
			continue
		case p.Outcome == Failed:
			rep.Phantoms++
			rep.example("%s: %s#%d received but its publish was refused", s.Name, ch, m.seq)
			continue
		}
		if received[m.seq] {
			rep.Duplicates++
			rep.example("%s: %s#%d received again", s.Name, ch, m.seq)
			continue
		}
		received[m.seq] = true
		rep.Delivered++
		if m.seq < highest {
			rep.Reorders++
			rep.example("%s: %s#%d received after #%d", s.Name, ch, m.seq, highest)
		}
		highest = max(highest, m.seq)
	}

	seqs := make([]int, 0, len(pubs))
	for seq := range pubs {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		p := pubs[seq]
		if p.At <= openedAt || p.Outcome == Failed || received[seq] {
			continue
		}
		if p.Outcome == Unknown {
			rep.UnknownMissed++
			continue
		}
		if slices.ContainsFunc(gaps, func(g gap) bool { return g.lo < seq && seq < g.hi }) {
			rep.Covered++
			continue
		}
		rep.SilentLoss++
		rep.example("%s: %s#%d acknowledged, never received, no reset covers it", s.Name, ch, seq)
	}
}

// Recorder builds a Log while a run goes on; its methods are safe for
// concurrent use. It keeps a logical clock, advanced by every record, so
// that a subscriber's window (publishes sent after its first stream-open)
// is exact whatever the goroutines' timing.
type Recorder struct {
	mu    sync.Mutex
	clock uint64
	pubs  []Publish
	next  map[string]int // last sequence number per channel
	subs  []*SubscriberRecorder
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{next: map[string]int{}} }

func (r *Recorder) tick() uint64 { r.clock++; return r.clock }

// Request is a publish in flight, made by Recorder.Begin.
type Request struct {
	r     *Recorder
	first int
	// Seqs holds the sequence number of each event, in the order of the
	// channels given to Begin.
	Seqs []int
}

// Begin records a publish about to be sent of one event per element of
// channels (a batch when there are several) and returns it with the
// events' sequence numbers. Its outcome is Unknown until Settle.
func (r *Recorder) Begin(channels ...string) *Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := r.tick()
	req := &Request{r: r, first: len(r.pubs), Seqs: make([]int, len(channels))}
	for i, ch := range channels {
		r.next[ch]++
		req.Seqs[i] = r.next[ch]
		r.pubs = append(r.pubs, Publish{Channel: ch, Seq: r.next[ch], Outcome: Unknown, At: at})
	}
	return req
}

// Settle records the outcome of the request.
func (q *Request) Settle(o Outcome) {
	q.r.mu.Lock()
	defer q.r.mu.Unlock()
	for i := range q.Seqs {
		q.r.pubs[q.first+i].Outcome = o
	}
}

// Subscriber returns the recorder of a new subscriber of channels.
func (r *Recorder) Subscriber(name string, channels ...string) *SubscriberRecorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &SubscriberRecorder{r: r, s: Subscriber{Name: name, Channels: slices.Clone(channels)}}
	r.subs = append(r.subs, s)
	return s
}

// SubscriberRecorder records what one subscriber sees. Its methods are safe
// for concurrent use (one goroutine per subscriber is the usual).
type SubscriberRecorder struct {
	r      *Recorder
	s      Subscriber // guarded by r.mu
	opened bool
}

func (s *SubscriberRecorder) add(it Item) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	it.At = s.r.tick()
	if it.Kind == Open {
		s.opened = true
	}
	s.s.Items = append(s.s.Items, it)
}

// Open records a stream-open.
func (s *SubscriberRecorder) Open() { s.add(Item{Kind: Open}) }

// End records the end of a connection.
func (s *SubscriberRecorder) End() { s.add(Item{Kind: End}) }

// Event records an event from its data, a Payload. Data that is not a
// Payload is an error and is not recorded.
func (s *SubscriberRecorder) Event(data string) error {
	p, err := ParsePayload(data)
	if err != nil {
		return err
	}
	s.add(Item{Kind: Event, Channel: p.Ch, Seq: p.Seq})
	return nil
}

// Reset records a stream-reset from its data. A reset naming channels
// ("channel": "…" or "channels": […]) covers those; one naming none covers
// every channel of the stream.
func (s *SubscriberRecorder) Reset(data string) {
	var d struct {
		Channel  string   `json:"channel"`
		Channels []string `json:"channels"`
	}
	_ = json.Unmarshal([]byte(data), &d)
	chans := d.Channels
	if d.Channel != "" {
		chans = append(chans, d.Channel)
	}
	if len(chans) == 0 {
		s.add(Item{Kind: Reset})
		return
	}
	for _, ch := range chans {
		s.add(Item{Kind: Reset, Channel: ch})
	}
}

// Opened reports whether the subscriber has seen a stream-open.
func (s *SubscriberRecorder) Opened() bool {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.opened
}

// Log returns a copy of what was recorded so far.
func (r *Recorder) Log() Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := Log{Publishes: slices.Clone(r.pubs), Subscribers: make([]Subscriber, len(r.subs))}
	for i, s := range r.subs {
		l.Subscribers[i] = Subscriber{Name: s.s.Name, Channels: slices.Clone(s.s.Channels), Items: slices.Clone(s.s.Items)}
	}
	return l
}

// Counts returns how many publishes (events, not requests) had each outcome.
func (r *Recorder) Counts() map[Outcome]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[Outcome]int{}
	for _, p := range r.pubs {
		n[p.Outcome]++
	}
	return n
}

// Lagging describes the subscribers that have not yet received the last
// acknowledged event of each of their channels published in their window,
// one line each; none when every subscriber has caught up. A run should
// poll it until it is empty (or a deadline passes) before checking.
func (r *Recorder) Lagging() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	lastAcked := map[string]Publish{}
	for _, p := range r.pubs {
		if p.Outcome == Acked && p.Seq > lastAcked[p.Channel].Seq {
			lastAcked[p.Channel] = p
		}
	}
	var out []string
	for _, s := range r.subs {
		var openedAt uint64
		highest := map[string]int{}
		for _, it := range s.s.Items {
			switch {
			case it.Kind == Open && openedAt == 0:
				openedAt = it.At
			case it.Kind == Event:
				highest[it.Channel] = max(highest[it.Channel], it.Seq)
			}
		}
		var behind []string
		for _, ch := range s.s.Channels {
			p, ok := lastAcked[ch]
			if ok && p.At > openedAt && highest[ch] < p.Seq {
				behind = append(behind, fmt.Sprintf("%s at #%d of #%d", ch, highest[ch], p.Seq))
			}
		}
		if len(behind) > 0 {
			out = append(out, s.s.Name+": "+strings.Join(behind, ", "))
		}
	}
	return out
}
