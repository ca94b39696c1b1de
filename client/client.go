// Package client subscribes to Sluice streams (protocol.md §4–§6) from Go.
//
// Subscribe opens a Stream that reconnects by itself: it honours the server's
// retry field with jitter and exponential backoff on failures, resumes from the
// last cursor it saw (the stream-open cursor counts), fetches a fresh token
// from Config.Token for every connection, and reports what happens as typed
// items: Message, Open, Reset, Ended and Reconnecting. Errors that no retry can
// fix (a refused credential, a forbidden channel, a malformed request) end the
// Stream with an *HTTPError.
//
// The package also holds Reader, a bounded WHATWG event-stream parser usable
// on its own.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/internal/backoff"
)

// Default values of Config.
const (
	DefaultPath       = "/events"
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

var (
	// ErrAccessRevoked ends a Stream whose server reported the condition
	// access-revoked: reconnecting with the same identity cannot succeed.
	ErrAccessRevoked = errors.New("client: access revoked")
	// ErrNotEventStream ends a Stream whose server answered 200 with a
	// content type other than text/event-stream, or 204.
	ErrNotEventStream = errors.New("client: response is not an event stream")
	// ErrClosed is returned by Next after Close.
	ErrClosed = errors.New("client: stream closed")
)

// Config describes a subscription. The zero value of every field but URL is
// usable.
type Config struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:8080".
	URL string
	// Channels are sent as repeated channel query parameters. They may be
	// empty for an endpoint that resolves its own channels.
	Channels []string
	// Path is the stream endpoint; DefaultPath when empty. A feature route
	// such as "/api/v1/scans/42/events" works with no Channels.
	Path string
	// Token, if set, is called before every connection attempt and its
	// result sent as a bearer token; it is how a long-lived subscriber
	// refreshes an expiring JWT. An error from it ends the Stream.
	Token func(ctx context.Context) (string, error)
	// UseQueryToken sends the token as ?access_token= instead of the
	// Authorization header, as a browser would.
	UseQueryToken bool
	// Header holds extra request headers, e.g. "Authorization: Api-Key …"
	// when Token is nil.
	Header http.Header
	// HTTPClient makes the requests; http.DefaultClient when nil. Its
	// Timeout must be zero, or it cuts every stream.
	HTTPClient *http.Client
	// LastEventID is the cursor the first connection resumes from.
	LastEventID string
	// MinBackoff is the least wait before a reconnection when the server set
	// no retry; DefaultMinBackoff when zero.
	MinBackoff time.Duration
	// MaxBackoff caps the wait between attempts; DefaultMaxBackoff when zero.
	MaxBackoff time.Duration
	// MaxLine bounds the length of a stream line; DefaultMaxLine when zero.
	MaxLine int
}

// Item is what a Stream yields: Message, Open, Reset, Ended or Reconnecting.
type Item interface{ isItem() }

// Message is an event published to a channel of the stream.
type Message struct {
	ID   string // the stream cursor after this event
	Type string // the event name, e.g. "scan.progress"
	Data string // the JSON payload
}

// Open reports that a connection was established (the stream-open event).
type Open struct {
	Channels []string
	Cursor   string // the position from which this connection delivers
}

// Reset reports that events may have been missed and the caller should
// refetch state from its source of truth (stream-reset): right after Open
// when the server could not honour the resume cursor, or in the middle of a
// stream when the broker lost a channel's history (Channel names it then;
// the stream goes on from the reset's id, which Cursor reflects).
type Reset struct {
	Reason  string
	Channel string // the channel concerned; empty: every channel of the stream
}

// Ended reports that the server ended the connection with stream-error. The
// Stream reconnects afterwards, except for event.EndAccessRevoked.
type Ended struct {
	Condition event.EndReason // one of the stream-error conditions of event.EndReason
	Text      string
}

// Reconnecting reports a lost or refused connection and the wait before the
// next attempt, which the following Next call performs.
type Reconnecting struct {
	Err   error         // why the connection ended; io.EOF for a clean end
	Delay time.Duration // wait before the next attempt
}

func (Message) isItem()      {}
func (Open) isItem()         {}
func (Reset) isItem()        {}
func (Ended) isItem()        {}
func (Reconnecting) isItem() {}

// HTTPError is a refused stream request. When the body is an RFC 9457
// problem, Code, Title and Detail come from it.
type HTTPError struct {
	Status     int
	Code       string
	Title      string
	Detail     string
	RetryAfter time.Duration // from a Retry-After header in seconds, if any
}

// Error implements error.
func (e *HTTPError) Error() string {
	s := "client: HTTP " + strconv.Itoa(e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Temporary reports whether a later attempt may succeed: 429 and 5xx.
func (e *HTTPError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Stream is a self-reconnecting subscription. Its methods other than Close
// must be called from one goroutine; Close may be called from any.
type Stream struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	cfg    Config
	hc     *http.Client

	body io.ReadCloser
	rd   *Reader

	cursor      string        // resume point: last id seen
	retry       time.Duration // server's retry, 0 if none yet
	failures    int           // consecutive failed attempts
	unauthOnce  bool          // a 401 was answered by a refresh already
	queryCursor bool          // next connection sends ?lastEventId=
	wait        time.Duration // pending wait before the next attempt
	err         error         // terminal
}

// Subscribe returns a Stream for cfg. It connects lazily, on the first Next.
// Cancelling ctx or calling Close ends it and releases its connection.
func Subscribe(ctx context.Context, cfg Config) *Stream {
	ctx, cancel := context.WithCancelCause(ctx)
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Stream{ctx: ctx, cancel: cancel, cfg: cfg, hc: hc, cursor: cfg.LastEventID}
}

// Cursor returns the cursor a reconnection would resume from.
func (s *Stream) Cursor() string { return s.cursor }

// Close ends the Stream; a blocked Next returns ErrClosed. It is safe to call
// more than once and from any goroutine.
func (s *Stream) Close() error {
	s.cancel(ErrClosed)
	return nil
}

// All iterates over the items of the Stream until it ends; the final pair
// carries the terminal error (never nil). Breaking out of the loop does not
// close the Stream.
func (s *Stream) All() func(yield func(Item, error) bool) {
	return func(yield func(Item, error) bool) {
		for {
			it, err := s.Next()
			if !yield(it, err) || err != nil {
				return
			}
		}
	}
}

// Next blocks until the next item and returns it. A non-nil error is
// terminal and sticky: the context's cause (ErrClosed after Close), an *HTTPError
// that retrying cannot fix, ErrAccessRevoked, ErrNotEventStream, or an error
// of Config.Token.
func (s *Stream) Next() (Item, error) {
	for {
		if s.err != nil {
			return nil, s.err
		}
		if err := s.ctx.Err(); err != nil {
			return nil, s.fail(nil)
		}
		if s.rd == nil {
			if s.wait > 0 {
				t := time.NewTimer(s.wait)
				select {
				case <-s.ctx.Done():
					t.Stop()
					return nil, s.fail(nil)
				case <-t.C:
				}
				s.wait = 0
			}
			if it, err := s.connect(); it != nil || err != nil {
				return it, err
			}
			continue
		}
		ev, err := s.rd.Next()
		if d, ok := s.rd.Retry(); ok {
			s.retry = d
		}
		s.cursor = s.rd.LastEventID()
		if err != nil {
			s.drop()
			if s.ctx.Err() != nil {
				return nil, s.fail(nil)
			}
			return s.reconnect(err, s.backoff()), nil
		}
		if it, err := s.handle(ev); it != nil || err != nil {
			return it, err
		}
	}
}

func (s *Stream) handle(ev Event) (Item, error) {
	switch ev.Type {
	case event.TypeOpen:
		var d struct {
			Channels []string `json:"channels"`
		}
		_ = json.Unmarshal([]byte(ev.Data), &d)
		s.failures, s.unauthOnce = 0, false
		return Open{Channels: d.Channels, Cursor: ev.ID}, nil
	case event.TypeReset:
		var d struct {
			Reason  string `json:"reason"`
			Channel string `json:"channel"`
		}
		_ = json.Unmarshal([]byte(ev.Data), &d)
		return Reset{Reason: d.Reason, Channel: d.Channel}, nil
	case event.TypeError:
		var d struct {
			Condition event.EndReason `json:"condition"`
			Text      string          `json:"text"`
		}
		_ = json.Unmarshal([]byte(ev.Data), &d)
		s.drop()
		switch d.Condition {
		case event.EndAccessRevoked:
			s.err = ErrAccessRevoked
		case event.EndTokenExpired:
			// A fresh connection with a fresh token, at once; the cursor
			// travels in the query as protocol.md §5 suggests for this case.
			s.queryCursor = true
			s.wait = 0
		default:
			s.wait = s.backoff()
		}
		return Ended{Condition: d.Condition, Text: d.Text}, nil
	}
	return Message(ev), nil
}

// connect makes one attempt. It returns a Reconnecting item on a retryable
// failure, a terminal error, or neither when the stream is open.
func (s *Stream) connect() (Item, error) {
	req, err := s.request()
	if err != nil {
		return nil, s.fail(err)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, s.fail(nil)
		}
		return s.reconnect(err, s.backoff()), nil
	}
	s.queryCursor = false
	if resp.StatusCode != http.StatusOK {
		herr := readProblem(resp)
		switch {
		case resp.StatusCode == http.StatusUnauthorized && s.cfg.Token != nil && !s.unauthOnce:
			s.unauthOnce = true
			return s.reconnect(herr, 0), nil
		case herr.Temporary():
			return s.reconnect(herr, max(herr.RetryAfter, s.backoff())), nil
		case resp.StatusCode == http.StatusNoContent:
			return nil, s.fail(ErrNotEventStream)
		default:
			return nil, s.fail(herr)
		}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		_ = resp.Body.Close()
		return nil, s.fail(ErrNotEventStream)
	}
	s.body = resp.Body
	s.rd = NewReader(resp.Body, s.cfg.MaxLine)
	s.rd.SetLastEventID(s.cursor)
	return nil, nil
}

func (s *Stream) request() (*http.Request, error) {
	u, err := url.Parse(strings.TrimSuffix(s.cfg.URL, "/") + s.cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("client: bad URL: %w", err)
	}
	q := u.Query()
	for _, c := range s.cfg.Channels {
		q.Add("channel", c)
	}
	var token string
	if s.cfg.Token != nil {
		if token, err = s.cfg.Token(s.ctx); err != nil {
			return nil, fmt.Errorf("client: token: %w", err)
		}
	}
	if token != "" && s.cfg.UseQueryToken {
		q.Set("access_token", token)
	}
	if s.cursor != "" && s.queryCursor {
		q.Set("lastEventId", s.cursor)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, v := range s.cfg.Header {
		req.Header[k] = append([]string(nil), v...)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if token != "" && !s.cfg.UseQueryToken {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if s.cursor != "" && !s.queryCursor {
		req.Header.Set("Last-Event-ID", s.cursor)
	}
	return req, nil
}

func readProblem(resp *http.Response) *HTTPError {
	defer resp.Body.Close()
	e := &HTTPError{Status: resp.StatusCode}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	var p struct {
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p) == nil {
		e.Code, e.Title, e.Detail = p.Code, p.Title, p.Detail
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return e
}

func (s *Stream) reconnect(err error, delay time.Duration) Item {
	s.failures++
	s.wait = delay
	return Reconnecting{Err: err, Delay: delay}
}

// backoff is the wait before the next attempt: the server's retry (or
// MinBackoff) doubled for each consecutive failure, capped at MaxBackoff,
// plus up to 25 % jitter so that clients dropped together do not return
// together. The server's retry stays a lower bound.
func (s *Stream) backoff() time.Duration {
	base := s.cfg.MinBackoff
	if s.retry > 0 {
		base = s.retry
	}
	return backoff.Above.Draw(backoff.Ceiling(base, s.cfg.MaxBackoff, s.failures))
}

func (s *Stream) drop() {
	if s.body != nil {
		_ = s.body.Close()
	}
	s.body, s.rd = nil, nil
}

// fail makes err terminal; nil means the context ended.
func (s *Stream) fail(err error) error {
	s.drop()
	if err == nil {
		err = context.Cause(s.ctx)
	}
	if s.err == nil {
		s.err = err
	}
	s.cancel(err)
	return s.err
}
