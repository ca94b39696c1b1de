// Package backendcall asks an application's backend whether a caller may do
// something, with the caller's own credential, so that the backend's
// authorization stays the one source of truth. The membership source
// tenant.HTTP and the http authorizer of a routes file both use it.
//
// A call is a GET of a URL the caller built from a checked template (Escape
// and SegmentSafe keep a value inside its segment), carrying the caller's
// Authorization header. The answer is read by its status:
//
//   - 2xx: allowed;
//   - 401, 403, 404: refused (the backend's "no", which callers may cache);
//   - any other status, a network error or a timeout: a fault.
package backendcall

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Size limits of an answer's body.
const (
	// MaxBody is how much of an answer's body Ask keeps (Answer.Body): room
	// for a refusal's short explanation.
	MaxBody = 4 << 10
	// maxDrain is how much more is read and dropped so that the connection
	// can be reused; a longer body closes it.
	maxDrain = 64 << 10
)

// ErrRequest is returned by Ask for a URL that makes no valid request. Its
// text, like the other errors of Ask, has no package prefix: callers wrap it
// with their own.
var ErrRequest = errors.New("cannot build the request")

// StatusError is the error of an answer whose status is neither an allowance
// (2xx) nor a refusal (401, 403, 404): a fault of the backend.
type StatusError struct {
	Status int
}

// Error says which status the backend answered.
func (e *StatusError) Error() string {
	return "backend answered " + strconv.Itoa(e.Status)
}

// Client sends the calls. The zero value uses http.DefaultClient and no
// timeout of its own.
type Client struct {
	// HTTP sends the requests; nil means http.DefaultClient. Its redirect
	// policy applies as it is: a caller that must never send a credential
	// elsewhere than the configured URL refuses redirects in it (an
	// unfollowed redirect is then a fault, StatusError).
	HTTP *http.Client
	// Timeout bounds each call, added to the caller's ctx; zero means none
	// beyond ctx and HTTP's.
	Timeout time.Duration
}

// Answer is an allowance or a refusal of the backend.
type Answer struct {
	// Status is the backend's status: 2xx, 401, 403 or 404.
	Status int
	// Body is the start of the answer's body, at most MaxBody bytes.
	Body []byte
}

// Allowed reports whether the backend allowed the call (2xx).
func (a Answer) Allowed() bool {
	return a.Status >= 200 && a.Status < 300
}

// Ask sends GET target with credential as its Authorization header (none
// when it is empty) and Accept: application/json. It returns the Answer of
// an allowance or a refusal. Any other status is a *StatusError; a failure
// to send or to hear back is the cause without the URL, which may carry
// values of the caller (errors.Is(err, context.DeadlineExceeded) for a
// timeout); ErrRequest is a target that makes no request.
func (c Client) Ask(ctx context.Context, target, credential string) (Answer, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Answer{}, ErrRequest
	}
	if credential != "" {
		req.Header.Set("Authorization", credential)
	}
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		// A *url.Error quotes the URL; keep only the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300, s == http.StatusUnauthorized, s == http.StatusForbidden, s == http.StatusNotFound:
		return Answer{Status: s, Body: body}, nil
	default:
		return Answer{}, &StatusError{Status: s}
	}
}

// SegmentSafe reports whether v may be put in a URL as a value: not empty,
// "." nor "..", which a URL cannot carry as a path segment without changing
// the path it names.
func SegmentSafe(v string) bool {
	return v != "" && v != "." && v != ".."
}

// Escape percent-encodes every byte of v but the unreserved characters of
// RFC 3986 (A–Z a–z 0–9 - . _ ~), so that a value is one path segment or
// one query value wherever a template puts it: "/", "?", "#", "&", "=", ";"
// and "%" are all encoded.
func Escape(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
