package prom_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/metrics/prom"
	"github.com/sluicehq/sluice/stream"
)

func newRecorder(t testing.TB, open func() int) (*prom.Recorder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return prom.New(reg, open), reg
}

func TestOpenStreamsGauge(t *testing.T) {
	n := 3
	_, reg := newRecorder(t, func() int { return n })
	want := "# HELP sluice_streams_open Streams open on this instance now.\n# TYPE sluice_streams_open gauge\nsluice_streams_open 3\n"
	if got := exposition(t, reg, "sluice_streams_open"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	n = 7
	if got := gauge(t, reg, "sluice_streams_open"); got != 7 {
		t.Fatalf("after a change: %v, want 7", got)
	}
}

func TestNilOpenStreams(t *testing.T) {
	_, reg := newRecorder(t, nil)
	if got := gauge(t, reg, "sluice_streams_open"); got != 0 {
		t.Fatalf("got %v, want 0", got)
	}
}

func TestCounters(t *testing.T) {
	r, reg := newRecorder(t, nil)
	r.StreamOpened()
	r.StreamOpened()
	r.Published(5)
	r.Published(0)
	r.Delivered(4, 1000)
	r.Delivered(0, 20) // a keep-alive
	r.Resumed()

	for _, c := range []struct {
		name string
		want float64
	}{
		{"sluice_streams_opened_total", 2},
		{"sluice_events_published_total", 5},
		{"sluice_events_delivered_total", 4},
		{"sluice_bytes_written_total", 1020},
		{"sluice_streams_resumed_total", 1},
		{"sluice_slow_consumer_total", 0},
	} {
		if got := gauge(t, reg, c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLabelledCounters(t *testing.T) {
	r, reg := newRecorder(t, nil)
	r.StreamClosed("client-gone", time.Minute)
	r.StreamClosed("slow-consumer", time.Second)
	r.StreamClosed("slow-consumer", time.Second)
	r.StreamClosed("tenant 3f1c…", time.Second) // never a label of its own
	r.StreamRefused("foreign_tenant")
	r.StreamRefused("x-unknown-code")
	r.PublishRefused("invalid_event")
	r.Reset("history-unavailable")
	r.Reset("something new")

	want := `# HELP sluice_streams_closed_total Streams ended, by reason.
# TYPE sluice_streams_closed_total counter
sluice_streams_closed_total{reason="access-revoked"} 0
sluice_streams_closed_total{reason="client-gone"} 1
sluice_streams_closed_total{reason="other"} 1
sluice_streams_closed_total{reason="server-closed"} 0
sluice_streams_closed_total{reason="shutting-down"} 0
sluice_streams_closed_total{reason="slow-consumer"} 2
sluice_streams_closed_total{reason="token-expired"} 0
sluice_streams_closed_total{reason="write-error"} 0
# HELP sluice_slow_consumer_total Streams cut because their queue overflowed (closed with reason slow-consumer).
# TYPE sluice_slow_consumer_total counter
sluice_slow_consumer_total 2
# HELP sluice_streams_reset_total Streams that got stream-reset, by reason.
# TYPE sluice_streams_reset_total counter
sluice_streams_reset_total{reason="cursor-unreadable"} 0
sluice_streams_reset_total{reason="history-unavailable"} 1
sluice_streams_reset_total{reason="other"} 1
`
	if got := exposition(t, reg, "sluice_streams_closed_total", "sluice_slow_consumer_total", "sluice_streams_reset_total"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"sluice_streams_refused_total", "code", "foreign_tenant", 1},
		{"sluice_streams_refused_total", "code", "other", 1},
		{"sluice_streams_refused_total", "code", "invalid_token", 0},
		{"sluice_publish_refused_total", "code", "invalid_event", 1},
		{"sluice_publish_refused_total", "code", "other", 0},
	} {
		if got := labelValue(t, reg, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
}

// TestCardinality checks that the number of series is fixed at New and
// that no label names a tenant, a user or a channel, whatever is recorded.
func TestCardinality(t *testing.T) {
	r, reg := newRecorder(t, nil)
	before := series(t, reg)
	for i := range 500 {
		v := "value-" + strings.Repeat("x", i%37)
		r.StreamClosed(event.EndReason(v), 0)
		r.StreamRefused(v)
		r.PublishRefused(v)
		r.Reset(v)
		r.BrokerRoundTrip(v, time.Millisecond)
	}
	after := series(t, reg)
	if before != after {
		t.Fatalf("series grew from %d to %d", before, after)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{"reason", "code", "op"}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "sluice_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(allowed, lp.GetName()) {
					t.Errorf("%s has label %q", mf.GetName(), lp.GetName())
				}
			}
		}
	}
}

func TestHistograms(t *testing.T) {
	r, reg := newRecorder(t, nil)
	r.Latency(300 * time.Microsecond)
	r.Latency(2 * time.Second)
	r.Latency(-time.Second) // skewed clocks: observed as 0
	r.BrokerRoundTrip("publish", time.Millisecond)
	r.BrokerRoundTrip("since", 3*time.Millisecond)
	r.BrokerRoundTrip("flushall", time.Millisecond)
	r.StreamClosed("client-gone", 90*time.Second)

	lat := histogram(t, reg, "sluice_delivery_latency_seconds", "", "")
	if lat.GetSampleCount() != 3 || lat.GetSampleSum() < 2.0003 || lat.GetSampleSum() > 2.0004 {
		t.Errorf("latency count %d sum %v", lat.GetSampleCount(), lat.GetSampleSum())
	}
	b := lat.GetBucket()
	if b[0].GetUpperBound() != 0.0001 || b[len(b)-1].GetUpperBound() != 10 {
		t.Errorf("latency buckets span %v…%v, want 0.0001…10", b[0].GetUpperBound(), b[len(b)-1].GetUpperBound())
	}
	for op, want := range map[string]uint64{"publish": 1, "since": 1, "other": 1, "heads": 0} {
		if got := histogram(t, reg, "sluice_broker_roundtrip_seconds", "op", op).GetSampleCount(); got != want {
			t.Errorf("broker op %q: %d observations, want %d", op, got, want)
		}
	}
	if got := histogram(t, reg, "sluice_stream_duration_seconds", "", "").GetSampleSum(); got != 90 {
		t.Errorf("duration sum %v, want 90", got)
	}
}

func TestRuntimeCollectors(t *testing.T) {
	_, reg := newRecorder(t, nil)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var goroutines, process bool
	for _, mf := range mfs {
		goroutines = goroutines || mf.GetName() == "go_goroutines"
		process = process || strings.HasPrefix(mf.GetName(), "process_")
	}
	if !goroutines {
		t.Error("no go_goroutines")
	}
	if !process && runtime.GOOS == "linux" {
		t.Error("no process_ metrics")
	}
}

// TestSharedRegistry checks that the Go and process collectors already on a
// registry do not make New fail, and that a second Sluice recorder on the
// same registry is refused loudly.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector()) // as a host program may have done
	prom.New(reg, nil)
	defer func() {
		if recover() == nil {
			t.Error("a second recorder on one registry did not panic")
		}
	}()
	prom.New(reg, nil)
}

func TestNilRegisterer(t *testing.T) {
	r := prom.New(nil, nil)
	r.StreamOpened()
	r.Delivered(1, 1)
	r.Latency(time.Millisecond)
}

// TestKnownValues checks that the label sets cover what the stream server
// reports.
func TestKnownValues(t *testing.T) {
	for _, v := range event.EndReasons {
		if !slices.Contains(prom.CloseReasons, string(v)) {
			t.Errorf("close reason %q is not known", v)
		}
	}
	for _, v := range []string{stream.ResetCursorUnreadable, stream.ResetHistoryUnavailable} {
		if !slices.Contains(prom.ResetReasons, v) {
			t.Errorf("reset reason %q is not known", v)
		}
	}
	// Every problem code package problem declares has a series of its own.
	f, err := parser.ParseFile(token.NewFileSet(), "../../problem/problem.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING || !strings.HasPrefix(vs.Names[i].Name, "Code") {
					continue
				}
				code, _ := strconv.Unquote(lit.Value)
				n++
				if !slices.Contains(prom.ProblemCodes, code) {
					t.Errorf("problem code %q is not in prom.ProblemCodes", code)
				}
			}
		}
	}
	if n < 30 {
		t.Fatalf("found only %d problem codes in problem.go", n)
	}
}

func TestHotPathAllocs(t *testing.T) {
	r, _ := newRecorder(t, nil)
	if n := testing.AllocsPerRun(1000, func() {
		r.Latency(time.Millisecond)
		r.Delivered(1, 120)
		r.StreamClosed("client-gone", time.Second)
		r.StreamClosed("unexpected", time.Second)
		r.BrokerRoundTrip("publish", time.Millisecond)
	}); n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}

func BenchmarkLatencyDelivered(b *testing.B) {
	r, _ := newRecorder(b, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Latency(750 * time.Microsecond)
			r.Delivered(1, 96)
		}
	})
}

// find returns the metric of family name whose label (if given) has value.
func find(t *testing.T, reg *prometheus.Registry, name, label, value string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return nil
}

// gauge returns the value of an unlabelled counter or gauge.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	m := find(t, reg, name, "", "")
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func labelValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	return find(t, reg, name, label, value).GetCounter().GetValue()
}

func histogram(t *testing.T, reg *prometheus.Registry, name, label, value string) *dto.Histogram {
	t.Helper()
	return find(t, reg, name, label, value).GetHistogram()
}

// exposition renders the named families in the Prometheus text format, in
// the order given.
func exposition(t *testing.T, reg *prometheus.Registry, names ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, name := range names {
		i := slices.IndexFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == name })
		if i < 0 {
			t.Fatalf("no family %s", name)
		}
		if _, err := expfmt.MetricFamilyToText(&b, mfs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// series counts the series of every family.
func series(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "sluice_") {
			n += len(mf.GetMetric())
		}
	}
	return n
}
