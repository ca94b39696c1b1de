package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// The claim set of a JWT is decoded here, not by golang-jwt nor by
// encoding/json into a struct: both match names case-insensitively (a
// "TENANT_ID" would be taken for "tenant_id") and let the last of two equal
// names win (RFC 7519 §4 allows that only to parsers that promise it; a
// token with {"exp":past,"EXP":future} would live forever). jwt.MapClaims
// matches exactly but also lets the last duplicate win, accepts a string
// "exp" through json.Number and takes "exp":0 for no exp. golang-jwt only
// checks the header, the algorithm and the signature; every claim is decided
// by decodeClaims and verifier.check.

// knownClaims are the claims Sluice reads or that RFC 7519 registers. A
// claim set holding two names that are equal under Unicode case folding to
// one of them is refused, whatever the case of either.
var knownClaims = [...]string{"exp", "nbf", "iat", "iss", "aud", "sub", "jti", "user_id", "tenant_id", "token_type", "typ"}

// claimError is a refusal of a claim set; its text is a 401 detail and never
// holds a claim's value.
type claimError string

func (e claimError) Error() string { return string(e) }

// decodeClaims decodes a JWT payload strictly: valid UTF-8, exactly one JSON
// object and nothing after it but white space, no name twice (compared
// exactly), and no two names that fold to the same known claim. It returns
// every member's value as it appears in the payload, keyed by its exact
// (unescaped) name. Errors are claimErrors.
func decodeClaims(payload []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(payload) {
		return nil, claimError("token claims are not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, claimError("token claims are not a JSON object")
	}
	out := make(map[string]json.RawMessage, 8)
	var seen [len(knownClaims)]bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, claimError("token claims are not valid JSON")
		}
		name, ok := tok.(string)
		if !ok {
			return nil, claimError("token claims are not valid JSON")
		}
		if _, dup := out[name]; dup {
			return nil, duplicate(name)
		}
		for i, k := range knownClaims {
			if strings.EqualFold(name, k) {
				if seen[i] {
					return nil, duplicate(k)
				}
				seen[i] = true
			}
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, claimError("token claims are not valid JSON")
		}
		out[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, claimError("token claims are not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, claimError("token claims are followed by more data")
	}
	return out, nil
}

// duplicate is the refusal of a claim set naming a claim twice. Only the
// names of known claims appear in it: a token's own names stay out of logs.
func duplicate(name string) error {
	for _, k := range knownClaims {
		if k == name || strings.EqualFold(k, name) {
			return claimError("token claim " + k + " is named more than once")
		}
	}
	return claimError("token claims name a claim more than once")
}

// maxNumericDate bounds the magnitude of a NumericDate in seconds (about
// 34,800 years), far inside what time.Time represents.
const maxNumericDate = 1 << 40

// numericDate decodes a NumericDate (RFC 7519 §2): a JSON number of seconds
// since the Unix epoch, maybe fractional, rounded down to a whole second. A
// string, even of digits, is refused.
func numericDate(name string, raw json.RawMessage) (time.Time, error) {
	bad := claimError("token claim " + name + " must be a number of seconds since 1970")
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, bad
	}
	s := string(raw)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > maxNumericDate || n < -maxNumericDate {
			return time.Time{}, bad
		}
		return time.Unix(n, 0), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f > maxNumericDate || f < -maxNumericDate {
		return time.Time{}, bad
	}
	return time.Unix(int64(math.Floor(f)), 0), nil
}

// claimString decodes a claim that must be a JSON string.
func claimString(name string, raw json.RawMessage) (string, error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", claimError("token claim " + name + " must be a string")
	}
	return s, nil
}

// claimStrings decodes "aud": a string or an array of strings.
func claimStrings(name string, raw json.RawMessage) ([]string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		s, err := claimString(name, raw)
		return []string{s}, err
	}
	var list []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, claimError("token claim " + name + " must be a string or an array of strings")
	}
	out := make([]string, 0, len(list))
	for _, r := range list {
		s, err := claimString(name, r)
		if err != nil {
			return nil, claimError("token claim " + name + " must be a string or an array of strings")
		}
		out = append(out, s)
	}
	return out, nil
}

// rawClaims keeps the payload as golang-jwt hands it over, undecoded, so that
// decodeClaims sees the bytes that were signed. Its jwt.Claims methods are
// never called: the parser runs with jwt.WithoutClaimsValidation.
type rawClaims struct {
	payload []byte
}

var _ jwt.Claims = (*rawClaims)(nil)

// UnmarshalJSON implements json.Unmarshaler by keeping a copy of b.
func (c *rawClaims) UnmarshalJSON(b []byte) error {
	c.payload = append(c.payload[:0], b...)
	return nil
}

var errUnread = errors.New("auth: claims are checked by verifier.check")

// GetExpirationTime implements jwt.Claims; it is never called.
func (*rawClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, errUnread }

// GetIssuedAt implements jwt.Claims; it is never called.
func (*rawClaims) GetIssuedAt() (*jwt.NumericDate, error) { return nil, errUnread }

// GetNotBefore implements jwt.Claims; it is never called.
func (*rawClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, errUnread }

// GetIssuer implements jwt.Claims; it is never called.
func (*rawClaims) GetIssuer() (string, error) { return "", errUnread }

// GetSubject implements jwt.Claims; it is never called.
func (*rawClaims) GetSubject() (string, error) { return "", errUnread }

// GetAudience implements jwt.Claims; it is never called.
func (*rawClaims) GetAudience() (jwt.ClaimStrings, error) { return nil, errUnread }
