// Package problem writes HTTP errors as RFC 9457 problem details
// (application/problem+json), the one error format of every Sluice endpoint
// (protocol.md §4).
package problem

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Machine codes carried in the "code" member. Clients branch on these, so they
// never change meaning.
const (
	// 400
	CodeNoChannel       = "no_channel"
	CodeMalformedChan   = "malformed_channel"
	CodeTooManyChannels = "too_many_channels"
	CodeInvalidJSON     = "invalid_json"
	CodeInvalidEvent    = "invalid_event"
	CodeEmptyBatch      = "empty_batch"
	CodeBadRequest      = "bad_request"
	// 401
	CodeMissingCredentials   = "missing_credentials"
	CodeInvalidToken         = "invalid_token"
	CodeTokenExpired         = "token_expired"
	CodeAmbiguousCredentials = "ambiguous_credentials"
	CodeCredentialRevoked    = "credential_revoked"
	// 403
	CodeForeignTenant = "foreign_tenant"
	CodeNotMember     = "not_member"
	CodeForbidden     = "forbidden"
	// 404, 405
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	// 413, 415, 429, 431
	CodeEventTooLarge    = "event_too_large"
	CodeBatchTooLarge    = "batch_too_large"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeTooManyStreams   = "too_many_streams"
	CodeRateLimited      = "rate_limited"
	CodeHeadersTooLarge  = "headers_too_large"
	CodeTooManyTickets   = "too_many_tickets"             // 429: the user holds the most unredeemed tickets
	CodeTooManyPending   = "too_many_pending_connections" // 429/503: too many connections without a complete request
	// 408, 414
	CodeBodyTimeout = "body_timeout" // the body did not arrive within SLUICE_BODY_TIMEOUT
	CodeURITooLong  = "uri_too_long" // the request target is longer than SLUICE_MAX_URL_BYTES
	// Feature endpoints (routes): the application's backend refused the caller
	CodeBackendUnauthorized = "backend_unauthorized" // 401 from the backend
	// 5xx
	CodeInternal              = "internal_error"
	CodeBrokerUnavailable     = "broker_unavailable"
	CodeMembershipUnavailable = "membership_unavailable"
	CodeDraining              = "draining"
	CodeUpstream              = "upstream_error"

	CodeInvalidIdempotencyKey = "invalid_idempotency_key"
	CodeIdempotencyConflict   = "idempotency_conflict"
	CodePartiallyPublished    = "partially_published"
)

// Problem is an RFC 9457 problem detail. It implements error, so layers can
// return it and the HTTP edge renders it as is.
type Problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail,omitempty"`
	Type   string `json:"type,omitempty"`

	// IDs and Applied are set only in the answer to a batch that a Redis
	// Cluster applied in part (CodePartiallyPublished): per event, in the
	// batch's order, its id when it was published (null otherwise) and
	// whether it was.
	IDs     []*string `json:"ids,omitempty"`
	Applied []bool    `json:"applied,omitempty"`
}

// New returns a Problem with the given status, machine code and detail; the
// title is the status text.
func New(status int, code, detail string) *Problem {
	return &Problem{Status: status, Code: code, Title: http.StatusText(status), Detail: detail}
}

// Error implements error.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return strconv.Itoa(p.Status) + " " + p.Code + ": " + p.Detail
	}
	return strconv.Itoa(p.Status) + " " + p.Code
}

// As returns the *Problem in err's chain, if any.
func As(err error) (*Problem, bool) {
	var p *Problem
	ok := errors.As(err, &p)
	return p, ok
}

// Realm is the realm of every WWW-Authenticate challenge.
const Realm = "sluice"

// Write renders p. Every 401 carries WWW-Authenticate: Bearer realm="sluice",
// with error="invalid_token" unless the request presented no credential at all
// (protocol.md §2).
func Write(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	if p.Status == http.StatusUnauthorized {
		v := `Bearer realm="` + Realm + `"`
		if p.Code != CodeMissingCredentials {
			v += `, error="invalid_token"`
		}
		h.Set("WWW-Authenticate", v)
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	body, _ := json.Marshal(p)
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// WriteError renders err: a *Problem in its chain as is, anything else as a
// 500 whose detail reveals nothing of err.
//
// When err's chain suggests a wait (RetryAfter), it is sent as a
// Retry-After header.
func WriteError(w http.ResponseWriter, err error) {
	if d, ok := RetryAfter(err); ok {
		w.Header().Set("Retry-After", RetryAfterSeconds(d))
	}
	if p, ok := As(err); ok {
		Write(w, p)
		return
	}
	Write(w, New(http.StatusInternalServerError, CodeInternal, "internal error"))
}

// RetryAfter returns the wait that an error in err's chain suggests before
// trying again (a RetryAfter() time.Duration method, as limits.Refusal and
// auth.TicketRefusal have), and whether there is one.
func RetryAfter(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > 0 {
		return ra.RetryAfter(), true
	}
	return 0, false
}

// RetryAfterSeconds formats d as the value of a Retry-After header: whole
// seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10)
}
