package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// Since implements broker.Broker.
func (b *Broker) Since(ctx context.Context, ch channel.Name, after event.Position, limit int) ([]*event.Event, bool, error) {
	if b.closed.Load() {
		return nil, false, broker.ErrClosed
	}
	start := time.Now()
	defer b.observe("since", start)
	evs, ok, err := b.since(ctx, ch, after, limit)
	if err != nil {
		return nil, false, b.fail(ctx, "since", err)
	}
	return evs, ok, nil
}

func (b *Broker) since(ctx context.Context, ch channel.Name, after event.Position, limit int) ([]*event.Event, bool, error) {
	head, entries, err := b.readHistory(ctx, ch, after.Offset+1, limit)
	if err != nil {
		return nil, false, err
	}
	if head.Epoch == 0 { // no epoch: history lost, expired or never there
		return nil, after == event.Position{}, nil
	}
	if after == (event.Position{}) {
		after.Epoch = head.Epoch // from the first event, if history holds it
	}
	if after.Epoch != head.Epoch || after.Offset > head.Offset {
		return nil, false, nil
	}
	missing := head.Offset - after.Offset
	if missing == 0 {
		return nil, true, nil
	}
	cutoff := b.opts.Now().Add(-b.opts.HistoryTTL).UnixNano()
	n := min(uint64(max(limit, 0)), missing)
	out := make([]*event.Event, 0, n)
	for i, e := range entries {
		ev, err := decodeEntry(ch, head.Epoch, e)
		if err != nil {
			return nil, false, err
		}
		if i == 0 && (ev.Pos.Offset != after.Offset+1 || ev.Published < cutoff) {
			return nil, false, nil // trimmed or expired
		}
		if uint64(len(out)) == n {
			break
		}
		out = append(out, ev)
	}
	if len(entries) == 0 {
		return nil, false, nil // the stream expired or was trimmed away
	}
	return out, true, nil
}

// decodeEntry decodes one XRANGE entry: [id, [field, value, …]].
func decodeEntry(ch channel.Name, epoch uint64, m valkey.ValkeyMessage) (*event.Event, error) {
	xe, err := m.AsXRangeEntry()
	if err != nil {
		return nil, err
	}
	id, _, _ := strings.Cut(xe.ID, "-")
	off, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad history entry id %q", xe.ID)
	}
	pub, err := strconv.ParseInt(xe.FieldValues["p"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad history entry time %q", xe.FieldValues["p"])
	}
	return &event.Event{
		Channel:   ch,
		Type:      xe.FieldValues["t"],
		Data:      []byte(xe.FieldValues["d"]),
		Pos:       event.Position{Epoch: epoch, Offset: off},
		Published: pub,
	}, nil
}

// history returns what ch's subscribers at position from have missed: the
// events after it, or, when history no longer holds them, an event.Lost
// notice at the position the channel goes on from followed by every event
// history holds from there.
func (b *Broker) history(ctx context.Context, ch channel.Name, from event.Position) ([]*event.Event, error) {
	limit := b.opts.HistorySize
	head, entries, err := b.readHistory(ctx, ch, from.Offset+1, limit)
	if err != nil {
		return nil, err
	}
	if head.Epoch == 0 { // no history at all
		if from == (event.Position{}) {
			return nil, nil
		}
		return []*event.Event{event.NewLost(ch, event.Position{})}, nil
	}
	if head.Epoch != from.Epoch && from != (event.Position{}) {
		// Another epoch: everything of the old one after from is gone; the
		// new one is delivered from its first event history holds.
		if _, entries, err = b.readHistory(ctx, ch, 1, limit); err != nil {
			return nil, err
		}
		from = event.Position{Epoch: head.Epoch}
		out := []*event.Event{nil}
		out, err = appendEntries(out, ch, head.Epoch, entries)
		if err != nil {
			return nil, err
		}
		at := from
		if len(out) > 1 {
			at.Offset = out[1].Pos.Offset - 1
		} else {
			at.Offset = head.Offset
		}
		out[0] = event.NewLost(ch, at)
		return out, nil
	}
	from.Epoch = head.Epoch
	out, err := appendEntries(nil, ch, head.Epoch, entries)
	if err != nil {
		return nil, err
	}
	switch {
	case from.Offset >= head.Offset:
		return nil, nil
	case len(out) == 0: // trimmed or expired to nothing
		return []*event.Event{event.NewLost(ch, head)}, nil
	case out[0].Pos.Offset != from.Offset+1: // the oldest missed were trimmed
		lost := event.NewLost(ch, event.Position{Epoch: head.Epoch, Offset: out[0].Pos.Offset - 1})
		return append([]*event.Event{lost}, out...), nil
	}
	return out, nil
}

// readHistory runs the since script: ch's head (epoch 0 when it has no
// history) and at most limit history entries from offset first on.
func (b *Broker) readHistory(ctx context.Context, ch channel.Name, first uint64, limit int) (event.Position, []valkey.ValkeyMessage, error) {
	name := ch.String()
	r := b.execMulti(ctx, since, []valkey.LuaExec{{
		Keys: []string{b.metaKey(name), b.streamKey(name)},
		Args: []string{strconv.FormatUint(first, 10), strconv.Itoa(max(limit, 1))},
	}})[0]
	vs, err := r.ToArray()
	if err != nil {
		return event.Position{}, nil, err
	}
	if len(vs) == 0 {
		return event.Position{}, nil, nil
	}
	if len(vs) != 3 {
		return event.Position{}, nil, fmt.Errorf("unexpected since reply of %d values", len(vs))
	}
	head, err := positionOf(vs[:2])
	if err != nil {
		return event.Position{}, nil, err
	}
	entries, err := vs[2].ToArray()
	return head, entries, err
}

func appendEntries(out []*event.Event, ch channel.Name, epoch uint64, entries []valkey.ValkeyMessage) ([]*event.Event, error) {
	for _, e := range entries {
		ev, err := decodeEntry(ch, epoch, e)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}
