// Command sluice-bench puts load on a running Sluice server on this machine
// and reports delivery rate, publish→receive latency, loss, duplication and
// the server's memory and CPU cost (protocol.md §8).
//
// Usage:
//
//	sluice-bench --url http://127.0.0.1:8080 --secret S --publish-key K \
//	    --shape fanout --streams 1000 --rate 100 --duration 30s --pid $(pgrep -n sluice)
//
// Shapes:
//
//	idle           open --streams streams and hold them; report server RSS per stream
//	               (hold 130s or more: the Go runtime forces a GC every 2 minutes)
//	fanout         --streams subscribers on one channel, --rate events/s published to it
//	many-channels  --streams streams each on its own channel, --rate events/s round-robin
//	churn          --streams streams; --churn of them per second closed and reopened
//	resume-storm   --streams connected, all dropped, --events published, all resume at once
//
// Only loopback targets are accepted. Connections are spread over source
// addresses 127.0.0.2–127.0.0.250 so that ephemeral ports last. It prints one
// JSON line of numbers on stdout and a short summary on stderr, and stops by
// itself within --deadline.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"
)

const maxStreams = 19000

type config struct {
	url        string
	secret     string
	tenant     string
	user       string
	users      int
	publishKey string
	shape      string
	streams    int
	rate       float64
	duration   time.Duration
	ramp       float64
	churn      float64
	events     int
	settle     time.Duration
	warmup     time.Duration
	deadline   time.Duration
	pid        int
	buf        int
	publishers int
	batch      int
}

func main() {
	var c config
	fs := flag.NewFlagSet("sluice-bench", flag.ExitOnError)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of the Sluice server (loopback only)")
	fs.StringVar(&c.secret, "secret", os.Getenv("SLUICE_JWT_SECRET"), "HS256 secret to mint subscriber JWTs (default $SLUICE_JWT_SECRET)")
	fs.StringVar(&c.tenant, "tenant", "3f1c2a4e-1b2c-4d5e-8f90-123456789abc", "tenant UUID (tenant_id claim and channel names)")
	fs.StringVar(&c.user, "user", "bench", "user id (sub claim); with several users, <user>-<n>")
	fs.IntVar(&c.users, "users", 0, "distinct subscriber users, streams spread over them (default: one per stream, so that per-user stream limits hold)")
	fs.StringVar(&c.publishKey, "publish-key", os.Getenv("SLUICE_BENCH_PUBLISH_KEY"), "publisher key for POST /publish (default $SLUICE_BENCH_PUBLISH_KEY)")
	fs.StringVar(&c.shape, "shape", "fanout", "load shape: idle, fanout, many-channels, churn, resume-storm")
	fs.IntVar(&c.streams, "streams", 100, fmt.Sprintf("number of streams (at most %d)", maxStreams))
	fs.Float64Var(&c.rate, "rate", 10, "events published per second (fanout, many-channels, churn)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured phase length (hold time for idle and churn)")
	fs.Float64Var(&c.ramp, "ramp", 1000, "new connections per second while opening streams")
	fs.Float64Var(&c.churn, "churn", 50, "streams closed and reopened per second (churn)")
	fs.IntVar(&c.publishers, "publishers", 1, "concurrent publishing loops, each owning a share of the channels (many-channels); at most the number of channels")
	fs.IntVar(&c.batch, "batch", 1000, "events per publish request at most (fanout, many-channels); with 1, one POST per event, spaced evenly")
	fs.IntVar(&c.events, "events", 100, "events published while clients are away (resume-storm)")
	fs.DurationVar(&c.warmup, "warmup", 0, "leading part of the measured phase whose events are checked for loss but kept out of the latency figures (fanout, many-channels); see latency_all_* for every event")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "wait after opening streams before measuring, and for deliveries to drain")
	fs.DurationVar(&c.deadline, "deadline", 0, "hard limit on the whole run (default: ramp time + 3×settle + duration + 60s)")
	fs.IntVar(&c.pid, "pid", 0, "server process id, to read its RSS and CPU time from /proc (optional)")
	fs.IntVar(&c.buf, "buf", 2048, "read buffer per connection in bytes, also the longest accepted line")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "sluice-bench: load a local Sluice server and report the cost.\n\nUsage: sluice-bench [flags]\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nOutput: one JSON line on stdout (see README of cmd/sluice-bench or -h), a summary on stderr.\n"+
			"JSON fields: %s\n", outputFields)
	}
	_ = fs.Parse(os.Args[1:])

	res, err := run(context.Background(), c)
	if res != nil {
		line, _ := json.Marshal(res)
		fmt.Println(string(line))
		res.summary(os.Stderr, c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench:", err)
		os.Exit(1)
	}
}

func (c *config) validate() error {
	switch c.shape {
	case "idle", "fanout", "many-channels", "churn", "resume-storm":
	default:
		return fmt.Errorf("unknown --shape %q", c.shape)
	}
	if c.streams < 1 || c.streams > maxStreams {
		return fmt.Errorf("--streams must be 1..%d", maxStreams)
	}
	if c.secret == "" {
		return errors.New("--secret is required to mint tokens")
	}
	needsPublish := c.shape != "idle" && c.shape != "churn"
	if needsPublish && c.publishKey == "" {
		return errors.New("--publish-key is required for shape " + c.shape)
	}
	if c.duration <= 0 || c.duration > time.Hour {
		return errors.New("--duration must be in (0, 1h]")
	}
	if c.warmup < 0 || c.warmup >= c.duration {
		return errors.New("--warmup must be in [0, --duration)")
	}
	if c.warmup > 0 && c.shape != "fanout" && c.shape != "many-channels" {
		return errors.New("--warmup applies to the fanout and many-channels shapes only")
	}
	if c.rate <= 0 || c.rate > 1e6 || c.ramp <= 0 || c.churn <= 0 {
		return errors.New("--rate, --ramp and --churn must be positive (rate at most 1e6)")
	}
	if c.publishers < 1 || c.publishers > 64 {
		return errors.New("--publishers must be 1..64")
	}
	if c.batch < 1 || c.batch > 1000 {
		return errors.New("--batch must be 1..1000")
	}
	if c.events < 0 || c.events > 1_000_000 {
		return errors.New("--events must be 0..1000000")
	}
	if c.buf < 256 || c.buf > 1<<20 {
		return errors.New("--buf must be 256..1048576")
	}
	if c.deadline <= 0 {
		rampTime := time.Duration(float64(c.streams) / c.ramp * float64(time.Second))
		c.deadline = 2*rampTime + 3*c.settle + c.duration + time.Minute
	}
	return nil
}
