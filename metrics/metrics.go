// Package metrics is the narrow interface through which Sluice reports what it
// does, with a no-op implementation; the Prometheus implementation lives in
// metrics/prom so that the library does not force it on embedders.
package metrics

import (
	"time"

	"github.com/sluicehq/sluice/event"
)

// Recorder receives Sluice's measurements. Implementations must be safe for
// concurrent use and cheap: they are called on hot paths. Labels passed in are
// from small fixed sets (reasons, codes), never tenant or user ids.
type Recorder interface {
	// StreamOpened counts a stream that started (status 200 sent).
	StreamOpened()
	// StreamClosed counts a stream that ended, by reason.
	StreamClosed(reason event.EndReason, d time.Duration)
	// StreamRefused counts a stream request refused before it opened, by
	// problem code.
	StreamRefused(code string)
	// Published counts events accepted by the publish API.
	Published(n int)
	// PublishRefused counts publish requests refused, by problem code.
	PublishRefused(code string)
	// Delivered counts events and bytes written to streams.
	Delivered(events, bytes int)
	// Resumed counts streams that resumed from a cursor; Reset those that got
	// stream-reset.
	Resumed()
	Reset(reason string)
	// Latency observes the time from publish to the write of an event to a
	// stream.
	Latency(d time.Duration)
	// BrokerRoundTrip observes one broker operation.
	BrokerRoundTrip(op string, d time.Duration)
}

// Nop is a Recorder that records nothing.
type Nop struct{}

var _ Recorder = Nop{}

// StreamOpened implements Recorder.
func (Nop) StreamOpened() {}

// StreamClosed implements Recorder.
func (Nop) StreamClosed(event.EndReason, time.Duration) {}

// StreamRefused implements Recorder.
func (Nop) StreamRefused(string) {}

// Published implements Recorder.
func (Nop) Published(int) {}

// PublishRefused implements Recorder.
func (Nop) PublishRefused(string) {}

// Delivered implements Recorder.
func (Nop) Delivered(int, int) {}

// Resumed implements Recorder.
func (Nop) Resumed() {}

// Reset implements Recorder.
func (Nop) Reset(string) {}

// Latency implements Recorder.
func (Nop) Latency(time.Duration) {}

// BrokerRoundTrip implements Recorder.
func (Nop) BrokerRoundTrip(string, time.Duration) {}
