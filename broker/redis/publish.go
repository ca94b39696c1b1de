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
// rest), for the history TTL.
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
	head := [5]string{
		strconv.FormatUint(broker.NewEpoch(), 10),
		strconv.FormatInt(b.opts.Now().UnixNano(), 10),
		strconv.Itoa(b.opts.HistorySize),
		strconv.FormatInt(max(b.opts.HistoryTTL.Milliseconds(), 1), 10),
		"0",
	}
	if idem != "" {
		head[4] = "1"
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
	lo = 0
	for r, hi := range ends {
		err := b.runResult(res[r], order[lo:hi], out)
		if err == nil {
			for _, i := range order[lo:hi] {
				applied[i] = true
			}
		} else {
			errs = append(errs, err)
		}
		lo = hi
	}
	switch {
	case len(errs) == 0:
		return out, nil
	case len(errs) == len(ends):
		if errors.Is(errs[0], broker.ErrIdempotencyConflict) {
			return nil, errs[0]
		}
		return nil, b.fail(ctx, "publish", errs[0])
	default:
		return nil, &broker.PartialError{Applied: applied, Positions: out, Err: b.fail(ctx, "publish", errs[0])}
	}
}

// runResult decodes the reply of one publish run whose events are msgs[i]
// for i in idx, into out.
func (b *Broker) runResult(r valkey.ValkeyResult, idx []int, out []event.Position) error {
	vs, err := r.ToArray()
	if err != nil {
		return err
	}
	if len(vs) == 2 { // {"dup", "<epoch> <offset> ..."}, or one event's position
		if tag, _ := vs[0].ToString(); tag == "dup" {
			prev, err := vs[1].ToString()
			if err != nil {
				return err
			}
			f := strings.Fields(prev)
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
	}
	if len(vs) != 2*len(idx) {
		return fmt.Errorf("unexpected script reply of %d values for %d events", len(vs), len(idx))
	}
	for j, i := range idx {
		if out[i], err = positionOf(vs[2*j : 2*j+2]); err != nil {
			return err
		}
	}
	return nil
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
