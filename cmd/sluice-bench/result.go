package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// result is the JSON line; every field is a number. Durations are in the
// unit their name ends with; -1 means not measured (no --pid).
type result struct {
	Streams          int64   `json:"streams"`
	StreamsOpened    int64   `json:"streams_opened"`
	Errors           int64   `json:"errors"`
	Resets           int64   `json:"resets"`
	Ended            int64   `json:"stream_errors"`
	ChurnOpens       int64   `json:"churn_opens"`
	Publishes        int64   `json:"publish_requests"`
	PublishErrors    int64   `json:"publish_errors"`
	Published        int64   `json:"events_published"`
	Deliveries       int64   `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	LatP50us         float64 `json:"latency_p50_us"`
	LatP90us         float64 `json:"latency_p90_us"`
	LatP99us         float64 `json:"latency_p99_us"`
	LatMaxus         float64 `json:"latency_max_us"`
	// The same over every event, the warm-up's too (equal without --warmup).
	AllP50us       float64 `json:"latency_all_p50_us"`
	AllP99us       float64 `json:"latency_all_p99_us"`
	AllMaxus       float64 `json:"latency_all_max_us"`
	WarmupS        float64 `json:"warmup_s"`
	Lost           int64   `json:"lost"`
	Duplicated     int64   `json:"duplicated"`
	OpenP50ms      float64 `json:"open_p50_ms"`
	OpenP99ms      float64 `json:"open_p99_ms"`
	ChurnOpenP99ms float64 `json:"churn_open_p99_ms"`
	FirstP50ms     float64 `json:"resume_first_p50_ms"`
	FirstP99ms     float64 `json:"resume_first_p99_ms"`
	FirstMaxms     float64 `json:"resume_first_max_ms"`
	WallS          float64 `json:"measured_s"`
	RSSBeforeKB    int64   `json:"server_rss_before_kb"`
	RSSSettledKB   int64   `json:"server_rss_settled_kb"`
	RSSAfterKB     int64   `json:"server_rss_after_kb"`
	RSSPerStreamB  float64 `json:"server_rss_per_stream_b"`
	CPUus          int64   `json:"server_cpu_us"`
	CPUPerDelivery float64 `json:"server_cpu_us_per_delivery"`
	CPUCorePct     float64 `json:"server_cpu_core_pct"`
	// Kernel TCP buffer memory of the whole machine (/proc/net/sockstat, both
	// ends of every loopback connection), not part of the server's RSS.
	KernelTCPBeforeKB   int64   `json:"kernel_tcp_mem_before_kb"`
	KernelTCPAfterKB    int64   `json:"kernel_tcp_mem_after_kb"`
	KernelTCPPerStreamB float64 `json:"kernel_tcp_mem_per_stream_b"`
	// The load tool's own CPU over the measured phase: near 100 % of its
	// core, the latencies measure the tool as much as the server.
	ClientCPUCorePct float64 `json:"client_cpu_core_pct"`
}

// outputFields lists the JSON fields for --help.
const outputFields = "streams streams_opened errors resets stream_errors churn_opens publish_requests " +
	"publish_errors events_published deliveries deliveries_per_s latency_{p50,p90,p99,max}_us latency_all_{p50,p99,max}_us warmup_s lost duplicated " +
	"open_{p50,p99}_ms churn_open_p99_ms resume_first_{p50,p99,max}_ms measured_s server_rss_{before,settled,after}_kb " +
	"server_rss_per_stream_b server_cpu_us server_cpu_us_per_delivery server_cpu_core_pct " +
	"kernel_tcp_mem_{before,after}_kb kernel_tcp_mem_per_stream_b client_cpu_core_pct (-1: not measured)"

func (b *bench) fill(r *result, subs []*sub, p0, p1, p2 proc, began time.Time, wall time.Duration) {
	var steady, all histogram
	for i := range b.lat {
		steady.merge(&b.lat[i])
		all.merge(&b.warmLat[i])
	}
	all.merge(&steady)
	var last int64
	for _, s := range subs {
		s.track.finish(b.published[s.ch])
		r.Lost += int64(s.track.lost)
		r.Duplicated += int64(s.track.dup)
		r.Deliveries += int64(s.got.Load())
		last = max(last, s.last)
	}
	for _, n := range b.published {
		r.Published += int64(n)
	}
	r.Errors, r.Resets, r.Ended = b.errorCount(), b.resets.Load(), b.ended.Load()
	r.Publishes, r.PublishErrors = b.publishCalls.Load(), b.publishErrors.Load()
	if last > began.UnixNano() {
		r.DeliveriesPerSec = round(float64(r.Deliveries) / time.Duration(last-began.UnixNano()).Seconds())
	}
	us := func(ns int64) float64 { return round(float64(ns) / 1e3) }
	ms := func(ns int64) float64 { return round(float64(ns) / 1e6) }
	r.LatP50us, r.LatP90us, r.LatP99us, r.LatMaxus = us(steady.quantile(.5)), us(steady.quantile(.9)), us(steady.quantile(.99)), us(steady.max.Load())
	r.AllP50us, r.AllP99us, r.AllMaxus = us(all.quantile(.5)), us(all.quantile(.99)), us(all.max.Load())
	r.WarmupS = round(b.cfg.warmup.Seconds())
	r.OpenP50ms, r.OpenP99ms = ms(b.openLat.quantile(.5)), ms(b.openLat.quantile(.99))
	r.ChurnOpenP99ms = ms(b.churnLat.quantile(.99))
	r.FirstP50ms, r.FirstP99ms, r.FirstMaxms = ms(b.firstLat.quantile(.5)), ms(b.firstLat.quantile(.99)), ms(b.firstLat.max.Load())
	r.WallS = round(wall.Seconds())

	r.RSSBeforeKB, r.RSSSettledKB, r.RSSAfterKB = p0.rssKB, p1.rssKB, p2.rssKB
	r.RSSPerStreamB, r.CPUus, r.CPUPerDelivery, r.CPUCorePct = -1, -1, -1, -1
	if p0.ok && p2.ok && r.StreamsOpened > 0 {
		r.RSSPerStreamB = round(float64(p2.rssKB-p0.rssKB) * 1024 / float64(r.StreamsOpened))
	}
	if p1.ok && p2.ok {
		r.CPUus = (p2.cpuTicks - p1.cpuTicks) * 1e6 / clockTicks
		if r.Deliveries > 0 {
			r.CPUPerDelivery = round(float64(r.CPUus) / float64(r.Deliveries))
		}
		if wall > 0 {
			r.CPUCorePct = round(float64(r.CPUus) / float64(wall.Microseconds()) * 100)
		}
	}
}

func (h *histogram) merge(o *histogram) {
	for i := range o.counts {
		if n := o.counts[i].Load(); n > 0 {
			h.counts[i].Add(n)
		}
	}
	h.total.Add(o.total.Load())
	h.max.Store(max(h.max.Load(), o.max.Load()))
}

func round(f float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', 3, 64), 64)
	return v
}

func (r *result) summary(w io.Writer, c config) {
	fmt.Fprintf(w, "%s: %d/%d streams open (p50 %.1f ms, p99 %.1f ms), %d errors, %d resets, %d stream-errors\n",
		c.shape, r.StreamsOpened, r.Streams, r.OpenP50ms, r.OpenP99ms, r.Errors, r.Resets, r.Ended)
	if r.Published > 0 || r.Deliveries > 0 {
		fmt.Fprintf(w, "  published %d (%d refused requests), delivered %d (%.0f/s), lost %d, duplicated %d\n",
			r.Published, r.PublishErrors, r.Deliveries, r.DeliveriesPerSec, r.Lost, r.Duplicated)
		after := ""
		if r.WarmupS > 0 {
			after = fmt.Sprintf(" (after a %gs warm-up)", r.WarmupS)
		}
		fmt.Fprintf(w, "  publish→receive latency%s p50 %.0f µs, p90 %.0f µs, p99 %.0f µs, max %.0f µs\n",
			after, r.LatP50us, r.LatP90us, r.LatP99us, r.LatMaxus)
		if r.WarmupS > 0 {
			fmt.Fprintf(w, "  every event, the warm-up's too: p50 %.0f µs, p99 %.0f µs, max %.0f µs\n",
				r.AllP50us, r.AllP99us, r.AllMaxus)
		}
	}
	if c.shape == "churn" {
		fmt.Fprintf(w, "  churn: %d reopens, open p99 %.1f ms\n", r.ChurnOpens, r.ChurnOpenP99ms)
	}
	if c.shape == "resume-storm" {
		fmt.Fprintf(w, "  resume: first replayed event p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", r.FirstP50ms, r.FirstP99ms, r.FirstMaxms)
	}
	if r.CPUus >= 0 {
		fmt.Fprintf(w, "  server: RSS %d → %d kB (%.0f B/stream), CPU %.1f%% of a core, %.2f µs/delivery\n",
			r.RSSBeforeKB, r.RSSAfterKB, r.RSSPerStreamB, r.CPUCorePct, r.CPUPerDelivery)
	}
	if r.ClientCPUCorePct >= 0 {
		fmt.Fprintf(w, "  load tool: CPU %.1f%% of a core\n", r.ClientCPUCorePct)
	}
	if r.KernelTCPAfterKB >= 0 {
		fmt.Fprintf(w, "  kernel TCP memory (both ends, whole machine): %d → %d kB (%.0f B/stream)\n",
			r.KernelTCPBeforeKB, r.KernelTCPAfterKB, r.KernelTCPPerStreamB)
	}
}

// readSockstat returns the kernel's TCP buffer memory in kB ("TCP: … mem
// <pages>" of /proc/net/sockstat), -1 when unreadable.
func readSockstat() int64 {
	raw, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return -1
	}
	return parseSockstat(raw, int64(os.Getpagesize()))
}

func parseSockstat(raw []byte, page int64) int64 {
	for line := range strings.SplitSeq(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				n, err := strconv.ParseInt(f[i+1], 10, 64)
				if err != nil {
					return -1
				}
				return n * page / 1024
			}
		}
	}
	return -1
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

type proc struct {
	ok       bool
	rssKB    int64
	cpuTicks int64 // utime + stime
}

// readProc samples the RSS and CPU time of process pid; pid 0 samples
// nothing.
func readProc(pid int) (proc, error) {
	if pid <= 0 {
		return proc{}, nil
	}
	dir := "/proc/" + strconv.Itoa(pid)
	st, err := os.ReadFile(dir + "/status")
	if err != nil {
		return proc{}, err
	}
	var p proc
	sc := bufio.NewScanner(bytes.NewReader(st))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			p.rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return proc{}, err
	}
	p.cpuTicks, err = parseStatCPU(stat)
	p.ok = err == nil
	return p, err
}

// parseStatCPU returns utime+stime from /proc/<pid>/stat: fields 14 and 15,
// counted after the parenthesised command name, which may hold spaces.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stt, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat")
	}
	return ut + stt, nil
}
