// Package publisher is a Go client for Sluice's HTTP publishing API
// (POST /publish, protocol.md §7), for services that publish from another process
// than the gateway's. (A service that embeds the gateway publishes
// in-process with Gateway.Publish.)
//
//	pub := publisher.New("http://sluice:8080", os.Getenv("SLUICE_PUBLISH_KEY"))
//	id, err := pub.Publish(ctx, "scan-progress:"+tenant+":"+scanID, "scan.progress", map[string]int{"percent": 40})
//
// Requests refused for a reason that may pass (503 while the broker is
// unavailable, 429, 502, 504, a network error) are
// retried with exponential backoff and jitter. Each Publish or PublishBatch
// sends a fresh Idempotency-Key (a random UUID) and repeats it on its
// retries, so a retry after a lost reply publishes nothing again: the
// gateway answers the first ids (within SLUICE_HISTORY_TTL, on any instance).
//
// Every refusal from the gateway is an *Error carrying the problem's status
// and machine code (protocol.md §4), so callers branch with errors.As.
package publisher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/problem"
)

// MaxBatch is the largest batch the gateway accepts (protocol.md §7).
const MaxBatch = 1000

// Event is one event to publish: the JSON shape of POST /publish.
type Event struct {
	Channel string `json:"channel"` // "<prefix>:<tenant_id>:<resource_id>"
	Type    string `json:"event"`   // "resource.verb", e.g. "scan.progress"
	// Data is any value encoding/json can marshal (nil is JSON null); a
	// json.RawMessage is sent as is.
	Data any `json:"data"`
}

// Error is a refusal from the gateway: an RFC 9457 problem body, or what the
// client could make of a reply that was not one.
type Error struct {
	Status int // HTTP status, e.g. 400
	// Code is the problem's machine code, e.g. "malformed_channel" (see the
	// constants), or "http_<status>" for a reply that was not a problem
	// body (e.g. a 502 from a proxy).
	Code   string
	Title  string // the status text
	Detail string // human-readable explanation
}

// Error implements error.
func (e *Error) Error() string {
	s := "publisher: " + strconv.Itoa(e.Status) + " " + e.Code
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Temporary reports whether the request may succeed if sent again unchanged
// (429, 502, 503, 504). Client retries these itself before returning them.
func (e *Error) Temporary() bool { return retryable(e.Status) }

// Machine codes a publish may be refused with (protocol.md §4, §7).
const (
	CodeInvalidJSON       = problem.CodeInvalidJSON        // 400: the body is not the expected JSON
	CodeMalformedChannel  = problem.CodeMalformedChan      // 400: a channel name breaks protocol.md §1
	CodeInvalidEvent      = problem.CodeInvalidEvent       // 400: bad event name, or data missing or not JSON
	CodeEmptyBatch        = problem.CodeEmptyBatch         // 400: a batch with no event
	CodeMissingCreds      = problem.CodeMissingCredentials // 401: no publisher key sent
	CodeInvalidToken      = problem.CodeInvalidToken       // 401: the publisher key is not valid, or publishing is off
	CodeEventTooLarge     = problem.CodeEventTooLarge      // 413: data above SLUICE_MAX_EVENT_BYTES
	CodeBatchTooLarge     = problem.CodeBatchTooLarge      // 413: more than 1000 events
	CodeBodyTooLarge      = problem.CodeBodyTooLarge       // 413: body above SLUICE_MAX_BODY_BYTES
	CodeRateLimited       = problem.CodeRateLimited        // 429: a rate limit; retry later
	CodeBrokerUnavailable = problem.CodeBrokerUnavailable  // 503: the broker is unreachable; retry later

	CodeIdempotencyConflict = problem.CodeIdempotencyConflict // 422: the batch's key was used for another batch
	CodePartiallyPublished  = problem.CodePartiallyPublished  // 503: a Redis Cluster applied part of the batch; retried with the same key
)

// Client publishes to one gateway. It is safe for concurrent use.
type Client struct {
	url        string
	auth       string
	hc         *http.Client
	retries    int
	minBackoff time.Duration
	maxBackoff time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends requests with hc (default: a client with a 10 s
// timeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many times a request is retried after a temporary
// failure (default 3; 0 turns retries off, which also rules out duplicates).
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// WithBackoff sets the first and the longest wait between attempts (default
// 100 ms and 5 s). Each wait's ceiling doubles, the wait drawn from its upper
// half (jitter); a Retry-After header
// is honoured up to the longest wait.
func WithBackoff(first, longest time.Duration) Option {
	return func(c *Client) { c.minBackoff, c.maxBackoff = first, max(first, longest) }
}

// New returns a Client for the gateway at baseURL (e.g.
// "http://sluice:8080") publishing with the publisher key key.
func New(baseURL, key string, opts ...Option) *Client {
	c := &Client{
		url:        strings.TrimRight(baseURL, "/") + "/publish",
		auth:       "Bearer " + key,
		hc:         &http.Client{Timeout: 10 * time.Second},
		retries:    3,
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 5 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Publish publishes one event and returns its position in its channel
// (opaque; not a stream cursor).
func (c *Client) Publish(ctx context.Context, channel, event string, data any) (string, error) {
	ids, err := c.send(ctx, Event{Channel: channel, Type: event, Data: data})
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// PublishBatch publishes 1 to 1000 events in one request, all or nothing: one
// invalid event refuses the whole batch and none of it is delivered. It
// returns one id per event, in order.
func (c *Client) PublishBatch(ctx context.Context, evs []Event) ([]string, error) {
	if len(evs) == 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeEmptyBatch, Title: "Bad Request", Detail: "a batch holds 1 to 1000 events"}
	}
	return c.send(ctx, struct {
		Events []Event `json:"events"`
	}{evs})
}

func (c *Client) send(ctx context.Context, body any) ([]string, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeInvalidEvent, Title: "Bad Request", Detail: "data: " + err.Error()}
	}
	key := uuid.NewString() // one per batch, the same on every retry
	for attempt := 0; ; attempt++ {
		ids, wait, err := c.once(ctx, raw, key)
		if err == nil {
			return ids, nil
		}
		if wait < 0 || attempt >= c.retries || ctx.Err() != nil {
			return nil, err
		}
		d := c.backoff(attempt, wait)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// backoff returns the wait before retry attempt+1: drawn from the upper
// half of an exponential ceiling, or the server's Retry-After when it gave
// one.
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, c.maxBackoff)
	}
	return backoff.Equal.Draw(backoff.Ceiling(c.minBackoff, c.maxBackoff, attempt))
}

// once sends one request. wait is negative when the error is final, else the
// server's Retry-After (0 when absent).
func (c *Client) once(ctx context.Context, raw []byte, key string) (ids []string, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(raw))
	if err != nil {
		return nil, -1, fmt.Errorf("publisher: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, -1, fmt.Errorf("publisher: %w", ctx.Err())
		}
		return nil, 0, fmt.Errorf("publisher: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil && resp.StatusCode == http.StatusOK {
		return nil, 0, fmt.Errorf("publisher: reading the reply: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		var reply struct {
			IDs []string `json:"ids"`
		}
		if err := json.Unmarshal(body, &reply); err != nil || len(reply.IDs) == 0 {
			return nil, -1, fmt.Errorf("publisher: unexpected reply %.200q", body)
		}
		return reply.IDs, 0, nil
	}
	e := &Error{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
	var p struct {
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && p.Code != "" {
		e.Code, e.Detail = p.Code, p.Detail
		if p.Title != "" {
			e.Title = p.Title
		}
	} else {
		e.Code = "http_" + strconv.Itoa(resp.StatusCode)
		e.Detail = strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	if !retryable(resp.StatusCode) {
		return nil, -1, e
	}
	return nil, retryAfter(resp.Header.Get("Retry-After")), e
}

func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryAfter reads a Retry-After header given in seconds.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// IsCode reports whether err is (or wraps) an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
