package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/problem"
)

// PublisherKeys are the keys that may publish and revoke (POST /publish and
// /revoke, protocol.md §7), kept as SHA-256 sums and compared in constant
// time. The zero value holds none: publishing over HTTP is off.
type PublisherKeys struct {
	sums [][32]byte
}

// NewPublisherKeys returns the set of keys.
func NewPublisherKeys(keys []string) PublisherKeys {
	var pk PublisherKeys
	for _, k := range keys {
		pk.sums = append(pk.sums, sha256.Sum256([]byte(k)))
	}
	return pk
}

// Match reports, in constant time, whether k is one of the keys. It suits
// Config.IsPublisherKey, which tells a publisher key sent as a user's
// credential where it belongs.
func (pk PublisherKeys) Match(k string) bool {
	sum := sha256.Sum256([]byte(k))
	match := 0
	for i := range pk.sums {
		match |= subtle.ConstantTimeCompare(sum[:], pk.sums[i][:])
	}
	return match == 1
}

// Authorize checks the publisher key of a request (Authorization: Bearer
// <key>): nil, or a 401 *problem.Problem that says what to send.
func (pk PublisherKeys) Authorize(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return problem.New(http.StatusUnauthorized, problem.CodeMissingCredentials, "a publisher key is required: Authorization: Bearer <key>")
	}
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return problem.New(http.StatusUnauthorized, problem.CodeInvalidToken, "use Authorization: Bearer <publisher key>")
	}
	if len(pk.sums) == 0 {
		return problem.New(http.StatusUnauthorized, problem.CodeInvalidToken, "publishing is off on this server (no SLUICE_PUBLISH_KEYS)")
	}
	if !pk.Match(key) {
		return problem.New(http.StatusUnauthorized, problem.CodeInvalidToken, "the publisher key is not valid")
	}
	return nil
}
