package sluice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/problem"
)

// MaxBatch is the largest batch POST /publish accepts (protocol.md §7).
const MaxBatch = 1000

// Event is one event to publish with Publish, PublishBatch or
// PublishIdempotent: what one event of POST /publish carries (protocol.md §7).
type Event struct {
	Channel string // the channel's name (protocol.md §1), e.g. a channel.Name's String
	Type    string // the event's type, resource.verb, e.g. "scan.progress"
	Data    any    // the payload: JSON in a json.RawMessage or []byte is used as is; any other value is marshalled
}

// wireEvent is one event as the body of POST /publish carries it.
type wireEvent struct {
	Channel string          `json:"channel"`
	Type    string          `json:"event"`
	Data    json.RawMessage `json:"data"`
}

// Publish publishes one event in-process, exactly as POST /publish would:
// ev is validated, its data marshalled; the returned position is the
// event's place in its channel. Errors are *problem.Problem for invalid
// input.
func (g *Gateway) Publish(ctx context.Context, ev Event) (event.Position, error) {
	pos, err := g.PublishBatch(ctx, []Event{ev})
	if err != nil {
		return event.Position{}, err
	}
	return pos[0], nil
}

// PublishBatch validates every event, then publishes them all, in order; one
// invalid event refuses the whole batch and nothing of it is delivered.
// On a Redis Cluster a batch across hash slots is applied per channel: an
// error that is a *broker.PartialError says which events were published.
func (g *Gateway) PublishBatch(ctx context.Context, evs []Event) ([]event.Position, error) {
	w, err := toWire(evs)
	if err != nil {
		g.metrics.PublishRefused(problemCode(err))
		return nil, err
	}
	return g.publish(ctx, "", w)
}

// toWire marshals each event's data (JSON given as json.RawMessage or
// []byte is used as is).
func toWire(evs []Event) ([]wireEvent, error) {
	w := make([]wireEvent, len(evs))
	for i, e := range evs {
		w[i] = wireEvent{Channel: e.Channel, Type: e.Type}
		switch d := e.Data.(type) {
		case json.RawMessage:
			w[i].Data = d
		case []byte:
			w[i].Data = d
		default:
			raw, err := json.Marshal(d)
			if err != nil {
				at := ""
				if len(evs) > 1 {
					at = "events[" + strconv.Itoa(i) + "]: "
				}
				return nil, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, at+"data: "+err.Error())
			}
			w[i].Data = raw
		}
	}
	return w, nil
}

// PublishIdempotent is PublishBatch under an idempotency key (the
// Idempotency-Key header of POST /publish): the first call with key
// publishes; a repeat within the history TTL, on any instance, publishes
// nothing and returns the first call's positions. A key names one batch:
// reused for another batch (other events, data or order) it is refused (422).
func (g *Gateway) PublishIdempotent(ctx context.Context, key string, evs []Event) ([]event.Position, error) {
	w, err := toWire(evs)
	if err != nil {
		g.metrics.PublishRefused(problemCode(err))
		return nil, err
	}
	return g.publishIdempotent(ctx, key, w)
}

// publishIdempotent is PublishIdempotent of events already in wire form.
func (g *Gateway) publishIdempotent(ctx context.Context, key string, evs []wireEvent) ([]event.Position, error) {
	if err := validIdempotencyKey(key); err != nil {
		g.metrics.PublishRefused(problemCode(err))
		return nil, err
	}
	return g.publish(ctx, key, evs)
}

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 255

// validIdempotencyKey checks an Idempotency-Key: 1 to 255 visible ASCII
// characters.
func validIdempotencyKey(k string) error {
	if k == "" || len(k) > MaxIdempotencyKey {
		return problem.New(http.StatusBadRequest, problem.CodeInvalidIdempotencyKey,
			"Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID per batch")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return problem.New(http.StatusBadRequest, problem.CodeInvalidIdempotencyKey,
				"Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces or control characters), e.g. a UUID per batch")
		}
	}
	return nil
}

func (g *Gateway) publish(ctx context.Context, key string, evs []wireEvent) ([]event.Position, error) {
	msgs, err := g.validate(evs)
	if err != nil {
		g.metrics.PublishRefused(problemCode(err))
		return nil, err
	}
	var pos []event.Position
	if key == "" {
		pos, err = g.broker.Publish(ctx, msgs)
	} else {
		pos, err = g.broker.PublishIdempotent(ctx, key, msgs)
	}
	if err != nil {
		code := problem.CodeInternal
		var partial *broker.PartialError
		switch {
		case errors.As(err, &partial):
			code = problem.CodePartiallyPublished
		case errors.Is(err, broker.ErrIdempotencyConflict):
			code = problem.CodeIdempotencyConflict
			err = problem.New(http.StatusUnprocessableEntity, code,
				"this Idempotency-Key was used for another batch; use a new key for each batch")
		case errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed):
			code = problem.CodeBrokerUnavailable
		}
		g.metrics.PublishRefused(code)
		return nil, err
	}
	g.metrics.Published(len(msgs))
	return pos, nil
}

func problemCode(err error) string {
	if p, ok := problem.As(err); ok {
		return p.Code
	}
	return problem.CodeInternal
}

func (g *Gateway) validate(evs []wireEvent) ([]event.Message, error) {
	switch {
	case len(evs) == 0:
		return nil, problem.New(http.StatusBadRequest, problem.CodeEmptyBatch, "a batch holds 1 to 1000 events")
	case len(evs) > MaxBatch:
		return nil, problem.New(http.StatusRequestEntityTooLarge, problem.CodeBatchTooLarge, "a batch holds at most 1000 events")
	}
	msgs := make([]event.Message, len(evs))
	for i, e := range evs {
		at := ""
		if len(evs) > 1 {
			at = "events[" + strconv.Itoa(i) + "]: "
		}
		ch, err := channel.Parse(e.Channel)
		if err != nil {
			return nil, problem.New(http.StatusBadRequest, problem.CodeMalformedChan, at+err.Error())
		}
		if err := event.ValidType(e.Type); err != nil {
			return nil, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, at+eventTypeHint(e.Type, err))
		}
		if len(e.Data) == 0 {
			return nil, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, at+"data is required (any JSON value, null included)")
		}
		var buf bytes.Buffer
		buf.Grow(len(e.Data))
		if err := json.Compact(&buf, e.Data); err != nil {
			return nil, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, at+"data is not valid JSON")
		}
		if buf.Len() > g.opts.MaxEventBytes {
			return nil, problem.New(http.StatusRequestEntityTooLarge, problem.CodeEventTooLarge,
				at+"data is "+strconv.Itoa(buf.Len())+" bytes compact; the limit is "+strconv.Itoa(g.opts.MaxEventBytes))
		}
		msgs[i] = event.Message{Channel: ch, Type: e.Type, Data: buf.Bytes()}
	}
	return msgs, nil
}

// publishRequest is the body of POST /publish: one event, or a batch.
type publishRequest struct {
	wireEvent
	Events *[]wireEvent `json:"events"`
}

func (g *Gateway) servePublish(w http.ResponseWriter, r *http.Request) {
	if err := g.pubKeys.Authorize(r); err != nil {
		g.metrics.PublishRefused(problemCode(err))
		problem.WriteError(w, err)
		return
	}
	var req publishRequest
	if err := g.readBody(w, r, &req); err != nil {
		g.metrics.PublishRefused(problemCode(err))
		problem.WriteError(w, err)
		return
	}
	var evs []wireEvent
	switch {
	case req.Events != nil && (req.Channel != "" || req.Type != "" || req.Data != nil):
		err := problem.New(http.StatusBadRequest, problem.CodeBadRequest, "send either one event or {\"events\": […]}, not both")
		g.metrics.PublishRefused(err.Code)
		problem.Write(w, err)
		return
	case req.Events != nil:
		evs = *req.Events
	case req.Channel == "" && req.Type == "" && req.Data == nil:
		// {"events": null} decodes to a nil pointer: an empty batch, not a
		// single event.
		evs = nil
	default:
		evs = []wireEvent{req.wireEvent}
	}
	var pos []event.Position
	var err error
	if key, ok := r.Header["Idempotency-Key"]; ok {
		pos, err = g.publishIdempotent(r.Context(), strings.Join(key, ","), evs)
	} else {
		pos, err = g.publish(r.Context(), "", evs)
	}
	if err != nil {
		var partial *broker.PartialError // declared here: errors.As moves it to the heap
		if errors.As(err, &partial) {
			g.log.Warn("publish applied in part (Redis Cluster)", "err", err)
			problem.Write(w, partialProblem(partial))
			return
		}
		g.writeFault(w, err)
		return
	}
	writeIDs(w, pos)
}

// idsBufs are the buffers writeIDs encodes its answers in.
var idsBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeIDs answers a publish with the positions' ids, {"ids":[…]}, byte for
// byte as writeJSON would, without reflection nor a string per id: ids
// hold only [0-9a-z-], which JSON does not escape.
func writeIDs(w http.ResponseWriter, pos []event.Position) {
	bp := idsBufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"ids":[`...)
	for i, p := range pos {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(p.Append(append(b, '"')), '"')
	}
	b = append(b, "]}\n"...)
	setJSONHeader(w, http.StatusOK)
	_, _ = w.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		idsBufs.Put(bp)
	}
}

// partialProblem is the answer to a batch a Redis Cluster applied in part:
// 503, with the ids of the events that were published and which were.
func partialProblem(e *broker.PartialError) *problem.Problem {
	p := problem.New(http.StatusServiceUnavailable, problem.CodePartiallyPublished,
		"the event broker applied only some channels' events of this batch (see applied); "+
			"retry the same request with the same Idempotency-Key to publish the rest exactly once")
	p.Applied = e.Applied
	p.IDs = make([]*string, len(e.Applied))
	for i, ok := range e.Applied {
		if ok {
			id := e.Positions[i].String()
			p.IDs[i] = &id
		}
	}
	return p
}
