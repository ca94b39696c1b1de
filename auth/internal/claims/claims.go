// Package claims decodes the claim set of a JWT strictly. It is shared by
// package auth (a Principal's claims) and package auth/jwtauth (the verifier),
// so that both read a token's claims the same way.
package claims

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The claim set of a JWT is decoded here, not by golang-jwt nor by
// encoding/json into a struct: both match names case-insensitively (a
// "TENANT_ID" would be taken for "tenant_id") and let the last of two equal
// names win (RFC 7519 §4 allows that only to parsers that promise it; a
// token with {"exp":past,"EXP":future} would live forever). jwt.MapClaims
// matches exactly but also lets the last duplicate win, accepts a string
// "exp" through json.Number and takes "exp":0 for no exp. golang-jwt only
// checks the header, the algorithm and the signature; every claim is decided
// by Decode and the checks of package auth/jwtauth.

// knownClaims are the claims Sluice reads or that RFC 7519 registers. A
// claim set holding two names that are equal under Unicode case folding to
// one of them is refused, whatever the case of either.
var knownClaims = [...]string{"exp", "nbf", "iat", "iss", "aud", "sub", "jti", "user_id", "tenant_id", "token_type", "typ"}

// Error is a refusal of a claim set; its text is a 401 detail and never
// holds a claim's value.
type Error string

// Error returns the refusal's text.
func (e Error) Error() string { return string(e) }

// Decode decodes a JWT payload strictly: valid UTF-8, exactly one JSON
// object and nothing after it but white space, no name twice (compared
// exactly, after unescaping), and no two names that fold to the same known
// claim. It returns every member's value as it appears in the payload (a
// sub-slice of it), keyed by its exact name. Errors are claimErrors.
//
// The payload is checked whole by json.Valid first; the scan below then only
// finds the members' boundaries, which valid JSON makes unambiguous.
func Decode(payload []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(payload) {
		return nil, Error("token claims are not valid UTF-8")
	}
	if !json.Valid(payload) {
		return nil, Error("token claims are not valid JSON")
	}
	i := skipSpace(payload, 0)
	if payload[i] != '{' {
		return nil, Error("token claims are not a JSON object")
	}
	out := make(map[string]json.RawMessage, 8)
	var seen [len(knownClaims)]bool
	for i = skipSpace(payload, i+1); payload[i] != '}'; {
		end := endOfString(payload, i)
		name, ok := unquote(payload[i:end])
		if !ok {
			return nil, Error("token claims are not valid JSON")
		}
		if _, dup := out[name]; dup {
			return nil, duplicate(name)
		}
		for k, known := range knownClaims {
			if strings.EqualFold(name, known) {
				if seen[k] {
					return nil, duplicate(known)
				}
				seen[k] = true
			}
		}
		i = skipSpace(payload, skipSpace(payload, end)+1) // past ':'
		end = endOfValue(payload, i)
		out[name] = payload[i:end:end]
		if i = skipSpace(payload, end); payload[i] == ',' {
			i = skipSpace(payload, i+1)
		}
	}
	return out, nil
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index after the string that starts at b[i] ('"').
func endOfString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// endOfValue returns the index after the value that starts at b[i], in valid
// JSON.
func endOfValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = endOfString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) && !strings.ContainsRune(",}] \t\n\r", rune(b[i])) {
		i++
	}
	return i
}

// unquote decodes a JSON string (with its quotes), without allocating more
// than the result when it holds no escape.
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

// duplicate is the refusal of a claim set naming a claim twice. Only the
// names of known claims appear in it: a token's own names stay out of logs.
func duplicate(name string) error {
	for _, k := range knownClaims {
		if k == name || strings.EqualFold(k, name) {
			return Error("token claim " + k + " is named more than once")
		}
	}
	return Error("token claims name a claim more than once")
}

// maxNumericDate bounds the magnitude of a NumericDate in seconds (about
// 34,800 years), far inside what time.Time represents.
const maxNumericDate = 1 << 40

// NumericDate decodes a NumericDate (RFC 7519 §2): a JSON number of seconds
// since the Unix epoch, maybe fractional, rounded down to a whole second. A
// string, even of digits, is refused.
func NumericDate(name string, raw json.RawMessage) (time.Time, error) {
	bad := Error("token claim " + name + " must be a number of seconds since 1970")
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

// String decodes a claim that must be a JSON string.
func String(name string, raw json.RawMessage) (string, error) {
	s, ok := unquote(raw)
	if !ok {
		return "", Error("token claim " + name + " must be a string")
	}
	return s, nil
}

// Strings decodes "aud": a string or an array of strings.
func Strings(name string, raw json.RawMessage) ([]string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		s, err := String(name, raw)
		return []string{s}, err
	}
	var list []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, Error("token claim " + name + " must be a string or an array of strings")
	}
	out := make([]string, 0, len(list))
	for _, r := range list {
		s, err := String(name, r)
		if err != nil {
			return nil, Error("token claim " + name + " must be a string or an array of strings")
		}
		out = append(out, s)
	}
	return out, nil
}
