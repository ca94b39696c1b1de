package sluice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/problem"
)

// MaxBatch is the largest batch POST /publish accepts (SPEC §7).
const MaxBatch = 1000

// Event is one event to publish: the JSON shape of POST /publish and the
// argument of Gateway.PublishBatch.
type Event struct {
	Channel string          `json:"channel"`
	Event   string          `json:"event"`
	Data    json.RawMessage `json:"data"`
}

// Publish publishes one event in-process, exactly as POST /publish would:
// data is marshalled to JSON (a json.RawMessage or []byte holding JSON is
// used as is) and validated; the returned position is the event's place in
// its channel. Errors are *problem.Problem for invalid input.
func (g *Gateway) Publish(ctx context.Context, ch channel.Name, typ string, data any) (event.Position, error) {
	var raw []byte
	switch d := data.(type) {
	case json.RawMessage:
		raw = d
	case []byte:
		raw = d
	default:
		var err error
		if raw, err = json.Marshal(data); err != nil {
			return event.Position{}, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, "data: "+err.Error())
		}
	}
	pos, err := g.PublishBatch(ctx, []Event{{Channel: ch.String(), Event: typ, Data: raw}})
	if err != nil {
		return event.Position{}, err
	}
	return pos[0], nil
}

// PublishBatch validates every event, then publishes them all, in order; one
// invalid event refuses the whole batch and nothing of it is delivered.
func (g *Gateway) PublishBatch(ctx context.Context, evs []Event) ([]event.Position, error) {
	msgs, err := g.validate(evs)
	if err != nil {
		g.metrics.PublishRefused(problemCode(err))
		return nil, err
	}
	pos, err := g.broker.Publish(ctx, msgs)
	if err != nil {
		code := problem.CodeInternal
		if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) {
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

func (g *Gateway) validate(evs []Event) ([]event.Message, error) {
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
			return nil, problem.New(http.StatusBadRequest, problem.CodeMalformedChan, at+"channel: "+err.Error())
		}
		if err := event.ValidType(e.Event); err != nil {
			return nil, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, at+err.Error())
		}
		if len(e.Data) == 0 {
			return nil, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, at+"data is required (any JSON value, null included)")
		}
		var buf bytes.Buffer
		buf.Grow(len(e.Data))
		if err := json.Compact(&buf, e.Data); err != nil {
			return nil, problem.New(http.StatusBadRequest, problem.CodeInvalidEvent, at+"data is not valid JSON")
		}
		if buf.Len() > g.cfg.MaxEventBytes {
			return nil, problem.New(http.StatusRequestEntityTooLarge, problem.CodeEventTooLarge,
				at+"data is "+strconv.Itoa(buf.Len())+" bytes compact; the limit is "+strconv.Itoa(g.cfg.MaxEventBytes))
		}
		msgs[i] = event.Message{Channel: ch, Type: e.Event, Data: buf.Bytes()}
	}
	return msgs, nil
}

// publishRequest is the body of POST /publish: one event, or a batch.
type publishRequest struct {
	Event
	Events *[]Event `json:"events"`
}

func (g *Gateway) servePublish(w http.ResponseWriter, r *http.Request) {
	if err := g.publisher(r); err != nil {
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
	var evs []Event
	switch {
	case req.Events != nil && (req.Channel != "" || req.Event.Event != "" || req.Data != nil):
		err := problem.New(http.StatusBadRequest, problem.CodeBadRequest, "send either one event or {\"events\": […]}, not both")
		g.metrics.PublishRefused(err.Code)
		problem.Write(w, err)
		return
	case req.Events != nil:
		evs = *req.Events
	case req.Channel == "" && req.Event.Event == "" && req.Data == nil:
		// {"events": null} decodes to a nil pointer: an empty batch, not a
		// single event.
		evs = nil
	default:
		evs = []Event{req.Event}
	}
	pos, err := g.PublishBatch(r.Context(), evs)
	if err != nil {
		g.writeFault(w, err)
		return
	}
	ids := make([]string, len(pos))
	for i, p := range pos {
		ids[i] = p.String()
	}
	writeJSON(w, http.StatusOK, struct {
		IDs []string `json:"ids"`
	}{ids})
}
