//go:build unix

package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/faultcheck"
	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/internal/testutil"
)

// faultSubscribers is how many subscribers each fault scenario runs.
const faultSubscribers = 16

// twoInstances starts a redis-server of the test's own and two sluice
// instances on it.
func twoInstances(t *testing.T, env map[string]string) (*redistest.Server, *deployment, []*proc) {
	t.Helper()
	rs := startRedisServer(t)
	d := privateDeployment(t, fmt.Sprintf("redis://127.0.0.1:%d/0", rs.Port), env)
	return rs, d, []*proc{d.start("A"), d.start("B")}
}

func urlsOf(ps []*proc) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.url
	}
	return out
}

// An instance killed with SIGKILL and restarted on its port: its clients
// resume on the other instance with no loss, duplicate, reorder or reset.
func TestFaultInstanceKill(t *testing.T) {
	faultTest(t)
	_, _, ps := twoInstances(t, nil)
	run := newFaultRun(t, "instance-kill", urlsOf(ps), faultChannels(6))
	run.start()
	ps[1] = run.bounce(ps[1], 2*time.Second)
	run.waitAcked(1500, 60*time.Second)
	run.finish(false)
}

// Redis killed with SIGKILL and restarted empty 3 s later: what the
// instances acknowledge reaches every stream, or the stream is told with
// stream-reset; never a silent gap. Once Redis is back, the instances agree
// again: an instance killed then costs its clients no reset (a cursor minted
// on one instance after the loss resumes on the other).
func TestFaultRedisRestartEmpty(t *testing.T) {
	faultTest(t)
	rs, _, ps := twoInstances(t, nil)
	run := newFaultRun(t, "redis-restart-empty", urlsOf(ps), faultChannels(6))
	run.start()
	run.phase("SIGKILL Redis")
	rs.Kill()
	time.Sleep(3 * time.Second) // Redis is down
	rs.Start()                  // a new data directory: empty
	for _, p := range ps {
		testutil.Eventually(t, 30*time.Second, p.name+": /readyz answers 200 after Redis is back", func() bool {
			st, _, _ := p.get("/readyz")
			return st == http.StatusOK
		})
	}
	run.phase("Redis back, both instances ready")
	run.waitAcked(600, 60*time.Second)
	resets := run.resetCount()
	ps[0] = run.bounce(ps[0], time.Second)
	run.waitAcked(1000, 60*time.Second)
	run.finish(true)
	if n := run.resetCount() - resets; n > 0 {
		t.Errorf("faultcheck redis-restart-empty: %d stream-resets after Redis had recovered, from an instance kill that must cost none", n)
	}
}

// SIGTERM drains one instance (protocol.md §6 shutting-down): its clients resume on
// the other with nothing lost and no reset; it exits 0 and is started again.
func TestFaultDrain(t *testing.T) {
	faultTest(t)
	_, _, ps := twoInstances(t, map[string]string{"SLUICE_DRAIN_SPREAD": "2s", "SLUICE_DRAIN_TIMEOUT": "15s"})
	run := newFaultRun(t, "drain", urlsOf(ps), faultChannels(6))
	run.start()
	run.phase("SIGTERM B")
	ps[1].signal(syscall.SIGTERM)
	if code := ps[1].wait(30 * time.Second); code != 0 {
		t.Errorf("B exited with %d after SIGTERM, want 0", code)
	}
	run.phase("B drained and exited")
	ps[1] = ps[1].restart()
	run.phase("B restarted")
	run.waitAcked(1500, 60*time.Second)
	run.finish(false)
}

// Publishes carry an Idempotency-Key and are retried with it on the other
// instance when their outcome is unknown; the instance the publisher talks
// to is killed mid-run, and every tenth acknowledged publish is sent again
// as if its answer had been lost. No event may arrive twice.
func TestFaultIdempotentRetry(t *testing.T) {
	faultTest(t)
	_, _, ps := twoInstances(t, nil)
	run := newFaultRun(t, "idempotent-retry", urlsOf(ps), faultChannels(6))
	run.idempotent, run.sticky = true, true
	run.start()
	ps[0] = run.bounce(ps[0], time.Second) // the publisher's instance
	run.waitAcked(1000, 60*time.Second)
	run.finish(false)
}

// A 3-master Redis Cluster started by the test, batches across channels in
// slots of every master, and one instance killed and restarted mid-run: no
// loss, duplicate, reorder or reset.
func TestFaultCluster(t *testing.T) {
	faultTest(t)
	c := redistest.StartCluster(t, 3)
	d := privateDeployment(t, c.URL(), nil)
	ps := []*proc{d.start("A"), d.start("B")}
	// Two channels in the slots of each master, so that each batch of
	// three spans masters.
	var chans []string
	perNode := make([]int, 3)
	for len(chans) < 6 {
		ch := newChannel("fault")
		if n := master(keySlot(ch)); perNode[n] < 2 {
			perNode[n]++
			chans = append(chans, ch)
		}
	}
	slices.SortFunc(chans, func(a, b string) int { return keySlot(a) - keySlot(b) })
	chans = []string{chans[0], chans[2], chans[4], chans[1], chans[3], chans[5]}
	run := newFaultRun(t, "cluster", urlsOf(ps), chans)
	run.start()
	ps[1] = run.bounce(ps[1], 2*time.Second)
	run.waitAcked(1500, 60*time.Second)
	run.finish(false)

	// Each master holds the history of two channels.
	for _, n := range c.Nodes {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(n.Port), "--scan", "--pattern", d.prefix+"s:*").Output()
		if err != nil {
			t.Fatalf("redis-cli --scan on %s: %v", n.Addr(), err)
		}
		if keys := strings.Fields(string(out)); len(keys) != 2 {
			t.Errorf("master %s holds %d channel histories, want 2: %q", n.Addr(), len(keys), keys)
		}
	}
}

// master is which of the three masters of redis-cli --cluster create
// holds slot.
func master(slot int) int {
	switch {
	case slot <= 5460:
		return 0
	case slot <= 10922:
		return 1
	}
	return 2
}

// keySlot is the Redis Cluster slot of the keys of channel ch, whose hash
// tag is the channel name: CRC16 (XMODEM) modulo 16384.
func keySlot(ch string) int {
	var crc uint16
	for i := 0; i < len(ch); i++ {
		crc ^= uint16(ch[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// The checker can fail, end to end: over a real stream (one instance, the
// memory broker, no fault), one subscriber's record drops one event of its
// channel, repeats another and swaps two more; the run reports exactly
// 1 silent loss, 1 duplicate and 1 reorder, and nothing else.
func TestFaultCheckerSelfTest(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped with -short")
	}
	p := startSluice(t, "solo", map[string]string{"SLUICE_LOG_LEVEL": "info"})
	run := newFaultRun(t, "self-test", []string{p.url}, faultChannels(6))
	var held string
	run.tamper = func(i int, data string) []string {
		pl, err := faultcheck.ParsePayload(data)
		if i != 0 || err != nil || pl.Ch != run.chans[0] {
			return []string{data}
		}
		switch pl.Seq {
		case 10: // dropped
			return nil
		case 20: // repeated
			return []string{data, data}
		case 30: // swapped with 31
			held = data
			return nil
		case 31:
			return []string{data, held}
		}
		return []string{data}
	}
	run.startSubscribers(4)
	run.startPublisher()
	run.waitAcked(300, 20*time.Second)
	rep := run.check()
	if rep.SilentLoss != 1 || rep.Duplicates != 1 || rep.Reorders != 1 || rep.Phantoms != 0 || rep.Resets != 0 {
		t.Errorf("got %v phantoms=%d, want exactly silent_loss=1 duplicates=1 reorders=1; faults: %q", rep, rep.Phantoms, rep.Examples)
	}
}
