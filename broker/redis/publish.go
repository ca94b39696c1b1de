package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// Publish implements broker.Broker.
func (b *Broker) Publish(ctx context.Context, msgs []event.Message) ([]event.Position, error) {
	return b.publish(ctx, "", msgs)
}

// PublishIdempotent implements broker.Broker. The key is stored by the
// publish script itself, in the same atomic step as the events, under
// <prefix>idem:<sha256 of key> on one Redis, and per channel under
// <prefix>idem:{<channel>}:<sha256 of key> on a Redis Cluster (each run
// records what it applied, so a retry after a PartialError applies the
// rest), for the history TTL. The record holds the broker.Fingerprint of the
// run's events beside their positions: a repeat is told from another batch
// under the same key by it (on a cluster, channel by channel).
func (b *Broker) PublishIdempotent(ctx context.Context, key string, msgs []event.Message) ([]event.Position, error) {
	if key == "" {
		return nil, errors.New("redis broker: empty idempotency key")
	}
	return b.publish(ctx, key, msgs)
}

// publish applies a batch with the publish script: one run for the whole
// batch on one Redis (or a Sentinel-managed one), so that it is all or
// nothing; one run per channel on a Redis Cluster, whose scripts cannot
// reach keys of several slots (a channel's keys share one). Validation
// happens before (the caller), so a run fails only if Redis does.
//
// Redis runs nothing else while a script runs: a batch of the largest size
// (1,000 events) holds it for about 10 ms.
func (b *Broker) publish(ctx context.Context, idem string, msgs []event.Message) ([]event.Position, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	// An instance whose Pub/Sub connection is down would not see its own
	// events reach its own streams until it is back: it does not stand
	// behind a publish it cannot deliver, and says so like Ready does.
	if b.conn.Load() == nil {
		return nil, fmt.Errorf("redis broker: publish: %w: Pub/Sub connection down, reconnecting", broker.ErrUnavailable)
	}
	start := time.Now()
	defer b.observe("publish", start)
	cluster := b.client.Mode() == valkey.ClientModeCluster
	var idemHash string
	if idem != "" {
		sum := sha256.Sum256([]byte(idem))
		idemHash = hex.EncodeToString(sum[:16])
	}
	head := [5]string{ // ARGV[5]: "0", or each run's fingerprint under a key
		strconv.FormatUint(broker.NewEpoch(), 10),
		strconv.FormatInt(b.opts.Now().UnixNano(), 10),
		strconv.Itoa(b.opts.HistorySize),
		strconv.FormatInt(max(b.opts.HistoryTTL.Milliseconds(), 1), 10),
		"0",
	}
	order, ends := runs(msgs, cluster)
	execs := make([]valkey.LuaExec, len(ends))
	lo := 0
	for r, hi := range ends {
		keys := make([]string, 0, 2*(hi-lo)+1)
		args := append(make([]string, 0, len(head)+3*(hi-lo)), head[:]...)
		for _, i := range order[lo:hi] {
			ch := msgs[i].Channel.String()
			keys = append(keys, b.metaKey(ch), b.streamKey(ch))
			args = append(args, b.pubsubName(ch), msgs[i].Type, string(msgs[i].Data))
		}
		if idem != "" {
			args[4] = runFingerprint(msgs, order[lo:hi])
			if cluster {
				keys = append(keys, b.prefix+"idem:{"+msgs[order[lo]].Channel.String()+"}:"+idemHash)
			} else {
				keys = append(keys, b.prefix+"idem:"+idemHash)
			}
		}
		execs[r] = valkey.LuaExec{Keys: keys, Args: args}
		lo = hi
	}
	res := b.execMulti(ctx, publish, execs)
	out := make([]event.Position, len(msgs))
	applied := make([]bool, len(msgs))
	var errs []error
	conflict, fresh := false, false // a run refused the key; a run published
	lo = 0
	for r, hi := range ends {
		// ARGV[5]: the run's fingerprint, read back only under a key.
		dup, err := b.runResult(res[r], order[lo:hi], execs[r].Args[4], out)
		switch {
		case err == nil:
			fresh = fresh || !dup
			for _, i := range order[lo:hi] {
				applied[i] = true
			}
		case errors.Is(err, broker.ErrIdempotencyConflict):
			conflict = true
			errs = append(errs, err)
		default:
			errs = append(errs, err)
		}
		lo = hi
	}
	switch {
	case len(errs) == 0:
		return out, nil
	case conflict && !fresh:
		// The key names another batch (on a cluster: another part of some
		// channel), and this call published nothing.
		return nil, broker.ErrIdempotencyConflict
	case len(errs) == len(ends):
		return nil, b.fail(ctx, "publish", errs[0])
	default:
		return nil, &broker.PartialError{Applied: applied, Positions: out, Err: b.fail(ctx, "publish", errs[0])}
	}
}

// runResult decodes the reply of one publish run whose events are msgs[i]
// for i in idx, into out. dup says the run's idempotency key was used
// already: out holds what that use published, if sum (the fingerprint of
// this run's events) is the one recorded, else the error is
// ErrIdempotencyConflict.
func (b *Broker) runResult(r valkey.ValkeyResult, idx []int, sum string, out []event.Position) (dup bool, err error) {
	vs, err := r.ToArray()
	if err != nil {
		return false, err
	}
	if len(vs) == 2 { // {"dup", "<fingerprint> <epoch> <offset> ..."}, or one event's position
		if tag, _ := vs[0].ToString(); tag == "dup" {
			prev, err := vs[1].ToString()
			if err != nil {
				return true, err
			}
			return true, dupPositions(prev, sum, idx, out)
		}
	}
	if len(vs) != 2*len(idx) {
		return false, fmt.Errorf("unexpected script reply of %d values for %d events", len(vs), len(idx))
	}
	for j, i := range idx {
		if out[i], err = positionOf(vs[2*j : 2*j+2]); err != nil {
			return false, err
		}
	}
	return false, nil
}

// dupPositions decodes an idempotency record, "<fingerprint> <epoch>
// <offset> ...", into out[i] for i in idx, if its fingerprint is sum: else
// the key was used for other events, ErrIdempotencyConflict. A record
// written before fingerprints were stored ("<epoch> <offset> ...", within
// one history TTL of an upgrade) is compared by length only.
func dupPositions(prev, sum string, idx []int, out []event.Position) error {
	f := strings.Fields(prev)
	if len(f) == 2*len(idx)+1 {
		if f[0] != sum {
			return broker.ErrIdempotencyConflict
		}
		f = f[1:]
	}
	if len(f) != 2*len(idx) {
		return broker.ErrIdempotencyConflict
	}
	for j, i := range idx {
		e, err1 := strconv.ParseUint(f[2*j], 10, 64)
		o, err2 := strconv.ParseUint(f[2*j+1], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("bad stored idempotency record %q", prev)
		}
		out[i] = event.Position{Epoch: e, Offset: o}
	}
	return nil
}

// runFingerprint is the broker.Fingerprint, in hex, of the events msgs[i]
// for i in idx, in that order: the whole batch on one Redis, one channel's
// part of it on a Redis Cluster. A run of every event has them in their
// order (runs sorts stably by channel).
func runFingerprint(msgs []event.Message, idx []int) string {
	part := msgs
	if len(idx) != len(msgs) {
		part = make([]event.Message, len(idx))
		for j, i := range idx {
			part[j] = msgs[i]
		}
	}
	sum := broker.Fingerprint(part)
	return hex.EncodeToString(sum[:])
}

// runs splits a batch into script runs: order lists the indexes of msgs run
// by run, ends[r] is where run r ends in order. Against one Redis (or a
// Sentinel-managed one) the whole batch is one run; a Redis Cluster cannot
// run one script over keys of several slots, so there each run holds the
// events of one channel, in their order.
func runs(msgs []event.Message, cluster bool) (order, ends []int) {
	order = make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	if !cluster {
		return order, []int{len(order)}
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return strings.Compare(msgs[x].Channel.String(), msgs[y].Channel.String())
	})
	for i := 1; i < len(order); i++ {
		if msgs[order[i]].Channel != msgs[order[i-1]].Channel {
			ends = append(ends, i)
		}
	}
	return order, append(ends, len(order))
}

// position decodes a {epoch, offset} script reply.
func position(r valkey.ValkeyResult) (event.Position, error) {
	vs, err := r.ToArray()
	if err != nil {
		return event.Position{}, err
	}
	return positionOf(vs)
}

func positionOf(vs []valkey.ValkeyMessage) (event.Position, error) {
	if len(vs) != 2 {
		return event.Position{}, fmt.Errorf("unexpected script reply of %d values", len(vs))
	}
	es, err := vs[0].ToString()
	if err != nil {
		return event.Position{}, err
	}
	e, err := strconv.ParseUint(es, 10, 64)
	if err != nil {
		return event.Position{}, fmt.Errorf("bad epoch %q", es)
	}
	// Only Heads answers epoch 0 (no history), always at offset 0.
	o, err := vs[1].AsInt64()
	if err != nil || o < 0 {
		return event.Position{}, fmt.Errorf("bad offset: %v", err)
	}
	return event.Position{Epoch: e, Offset: uint64(o)}, nil
}

// Heads implements broker.Broker: one pipelined round trip for all channels.
func (b *Broker) Heads(ctx context.Context, chans []channel.Name) ([]event.Position, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	if len(chans) == 0 {
		return nil, nil
	}
	start := time.Now()
	defer b.observe("heads", start)
	ttl := strconv.FormatInt(max(b.opts.HistoryTTL.Milliseconds(), 1), 10)
	execs := make([]valkey.LuaExec, len(chans))
	for i, ch := range chans {
		execs[i] = valkey.LuaExec{
			Keys: []string{b.metaKey(ch.String()), b.streamKey(ch.String())},
			Args: []string{ttl},
		}
	}
	out := make([]event.Position, len(chans))
	for i, r := range b.execMulti(ctx, heads, execs) {
		p, err := position(r)
		if err != nil {
			return nil, b.fail(ctx, "heads", err)
		}
		out[i] = p
	}
	b.noteHeads(chans, out)
	return out, nil
}
