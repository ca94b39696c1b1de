// Package prom records Sluice's metrics with the Prometheus client library.
//
// Every metric is in the "sluice" namespace. No metric carries a tenant, user
// or channel label: label values come only from small fixed sets (close
// reasons, problem codes, reset reasons, broker operations), and a value
// outside its set is counted as "other", so a caller can never blow up the
// number of series. The labelled children are resolved once in New; the
// methods called per event (Delivered, Latency) do not allocate.
package prom

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/problem"
)

// Namespace prefixes every metric name.
const Namespace = "sluice"

// Other is the label value that stands for any value outside a label's
// known set.
const Other = "other"

// Known label values. A value not listed is recorded as Other.
var (
	// CloseReasons are the reasons a stream ends (metrics.Recorder.StreamClosed):
	// every event.EndReason.
	CloseReasons = endReasons()
	// ResetReasons are the reasons of stream-reset (protocol.md §5).
	ResetReasons = []string{"cursor-unreadable", "history-unavailable"}
	// BrokerOps are the broker operations whose round trip is observed.
	BrokerOps = []string{"publish", "heads", "since", "subscribe", "revoke", "ticket", "ready"}
	// ProblemCodes are the machine codes of refused requests (package problem).
	ProblemCodes = []string{
		problem.CodeNoChannel, problem.CodeMalformedChan, problem.CodeTooManyChannels,
		problem.CodeInvalidJSON, problem.CodeInvalidEvent, problem.CodeEmptyBatch, problem.CodeBadRequest,
		problem.CodeMissingCredentials, problem.CodeInvalidToken, problem.CodeTokenExpired,
		problem.CodeAmbiguousCredentials, problem.CodeCredentialRevoked,
		problem.CodeForeignTenant, problem.CodeNotMember, problem.CodeForbidden,
		problem.CodeNotFound, problem.CodeMethodNotAllowed,
		problem.CodeEventTooLarge, problem.CodeBatchTooLarge, problem.CodeBodyTooLarge,
		problem.CodeUnsupportedMedia, problem.CodeTooManyStreams, problem.CodeRateLimited,
		problem.CodeHeadersTooLarge, problem.CodeTooManyTickets, problem.CodeTooManyPending,
		problem.CodeBodyTimeout, problem.CodeURITooLong, problem.CodeBackendUnauthorized,
		problem.CodeInvalidIdempotencyKey, problem.CodeIdempotencyConflict, problem.CodePartiallyPublished,
		problem.CodeInternal, problem.CodeBrokerUnavailable, problem.CodeMembershipUnavailable,
		problem.CodeDraining, problem.CodeUpstream,
	}
)

// LatencyBuckets are the upper bounds, in seconds, of the publish→write
// latency and broker round-trip histograms: 100 µs to 10 s.
var LatencyBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// DurationBuckets are the upper bounds, in seconds, of the stream duration
// histogram: 1 s to 24 h.
var DurationBuckets = []float64{1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600}

// Recorder implements metrics.Recorder with Prometheus collectors. It is safe
// for concurrent use; its label children are fixed after New, so lookups need
// no lock.
type Recorder struct {
	opened    prometheus.Counter
	closed    labelled[prometheus.Counter]
	duration  prometheus.Observer
	refused   labelled[prometheus.Counter]
	published prometheus.Counter
	pubRefuse labelled[prometheus.Counter]
	delivered prometheus.Counter
	bytes     prometheus.Counter
	slow      prometheus.Counter
	resumed   prometheus.Counter
	resets    labelled[prometheus.Counter]
	latency   prometheus.Observer
	broker    labelled[prometheus.Observer]
	obRelayed prometheus.Counter
	obDead    labelled[prometheus.Counter]
}

var _ metrics.Recorder = (*Recorder)(nil)

// labelled holds the pre-resolved children of a vector, one per known label
// value plus Other.
type labelled[T any] struct {
	known map[string]T
	other T
}

func (l *labelled[T]) get(v string) T {
	if c, ok := l.known[v]; ok {
		return c
	}
	return l.other
}

func resolve[T any](values []string, with func(string) T) labelled[T] {
	l := labelled[T]{known: make(map[string]T, len(values)), other: with(Other)}
	for _, v := range values {
		l.known[v] = with(v)
	}
	return l
}

// New creates Sluice's collectors and registers them on reg, with the Go
// runtime and process collectors (left as they are when reg already holds
// them). openStreams reports the number of open streams when scraped; nil
// reports 0. A nil reg registers nothing (the Recorder still counts). New
// panics if reg already holds Sluice's collectors, as MustRegister does.
func New(reg prometheus.Registerer, openStreams func() int) *Recorder {
	if openStreams == nil {
		openStreams = func() int { return 0 }
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
	}

	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "streams_open",
		Help: "Streams open on this instance now.",
	}, func() float64 { return float64(openStreams()) })
	opened := counter("streams_opened_total", "Streams opened (status 200 sent).")
	closed := counterVec("streams_closed_total", "Streams ended, by reason.", "reason")
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "stream_duration_seconds",
		Help: "How long streams stayed open.", Buckets: DurationBuckets,
	})
	refused := counterVec("streams_refused_total", "Stream requests refused before the stream opened, by problem code.", "code")
	published := counter("events_published_total", "Events accepted by the publish API.")
	pubRefused := counterVec("publish_refused_total", "Publish requests refused, by problem code.", "code")
	delivered := counter("events_delivered_total", "Events written to streams.")
	bytes := counter("bytes_written_total", "Bytes written to streams, keep-alives and control events included.")
	slow := counter("slow_consumer_total", "Streams cut because their queue overflowed (closed with reason slow-consumer).")
	resumed := counter("streams_resumed_total", "Streams that resumed from a cursor with nothing lost.")
	resets := counterVec("streams_reset_total", "Streams that got stream-reset, by reason.", "reason")
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "delivery_latency_seconds",
		Help: "Time from publish to the write of an event to a stream.", Buckets: LatencyBuckets,
	})
	broker := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "broker_roundtrip_seconds",
		Help: "Round trip of one broker operation, by operation.", Buckets: LatencyBuckets,
	}, []string{"op"})

	obRelayed := counter("outbox_relayed_total", "Outbox rows published by the relay (SLUICE_OUTBOX).")
	obDead := counterVec("outbox_dead_letters_total", "Outbox rows refused and moved to the dead-letter table, by problem code.", "code")

	r := &Recorder{
		opened:    opened,
		closed:    resolve(CloseReasons, func(v string) prometheus.Counter { return closed.WithLabelValues(v) }),
		duration:  duration,
		refused:   resolve(ProblemCodes, func(v string) prometheus.Counter { return refused.WithLabelValues(v) }),
		published: published,
		pubRefuse: resolve(ProblemCodes, func(v string) prometheus.Counter { return pubRefused.WithLabelValues(v) }),
		delivered: delivered,
		bytes:     bytes,
		slow:      slow,
		resumed:   resumed,
		resets:    resolve(ResetReasons, func(v string) prometheus.Counter { return resets.WithLabelValues(v) }),
		latency:   latency,
		broker:    resolve(BrokerOps, func(v string) prometheus.Observer { return broker.WithLabelValues(v) }),
		obRelayed: obRelayed,
		obDead:    resolve(ProblemCodes, func(v string) prometheus.Counter { return obDead.WithLabelValues(v) }),
	}
	if reg == nil {
		return r
	}
	reg.MustRegister(open, opened, closed, duration, refused, published, pubRefused,
		delivered, bytes, slow, resumed, resets, latency, broker, obRelayed, obDead)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				panic(err)
			}
		}
	}
	return r
}

// StreamOpened implements metrics.Recorder.
func (r *Recorder) StreamOpened() { r.opened.Inc() }

// StreamClosed implements metrics.Recorder. A slow-consumer close also counts
// in sluice_slow_consumer_total.
func (r *Recorder) StreamClosed(reason event.EndReason, d time.Duration) {
	r.closed.get(string(reason)).Inc()
	r.duration.Observe(d.Seconds())
	if reason == event.EndSlowConsumer {
		r.slow.Inc()
	}
}

// StreamRefused implements metrics.Recorder.
func (r *Recorder) StreamRefused(code string) { r.refused.get(code).Inc() }

// Published implements metrics.Recorder.
func (r *Recorder) Published(n int) {
	if n > 0 {
		r.published.Add(float64(n))
	}
}

// PublishRefused implements metrics.Recorder.
func (r *Recorder) PublishRefused(code string) { r.pubRefuse.get(code).Inc() }

// Delivered implements metrics.Recorder.
func (r *Recorder) Delivered(events, bytes int) {
	if events > 0 {
		r.delivered.Add(float64(events))
	}
	if bytes > 0 {
		r.bytes.Add(float64(bytes))
	}
}

// Resumed implements metrics.Recorder.
func (r *Recorder) Resumed() { r.resumed.Inc() }

// Reset implements metrics.Recorder.
func (r *Recorder) Reset(reason string) { r.resets.get(reason).Inc() }

// Latency implements metrics.Recorder. A negative duration (clocks of two
// instances disagreeing) is observed as 0.
func (r *Recorder) Latency(d time.Duration) { r.latency.Observe(max(d, 0).Seconds()) }

// BrokerRoundTrip implements metrics.Recorder.
func (r *Recorder) BrokerRoundTrip(op string, d time.Duration) {
	r.broker.get(op).Observe(max(d, 0).Seconds())
}

// OutboxRelayed implements outbox.Recorder.
func (r *Recorder) OutboxRelayed(n int) {
	if n > 0 {
		r.obRelayed.Add(float64(n))
	}
}

// OutboxDeadLettered implements outbox.Recorder.
func (r *Recorder) OutboxDeadLettered(code string) { r.obDead.get(code).Inc() }

// endReasons returns event.EndReasons as label values.
func endReasons() []string {
	out := make([]string, len(event.EndReasons))
	for i, r := range event.EndReasons {
		out[i] = string(r)
	}
	return out
}
