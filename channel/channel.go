// Package channel builds and parses Sluice channel names (protocol.md §1).
//
// A channel name has exactly three segments separated by ':':
//
//	<prefix>:<tenant_id>:<resource_id>
//
// The prefix is owned by a feature (^[a-z][a-z0-9-]{0,62}$), the tenant id is a
// UUID in canonical lowercase hyphenated form, and the resource id is 1–128
// characters from [A-Za-z0-9._~-]. A Name can only exist valid: Make and Parse
// are the only ways to obtain one, and both refuse anything else with an *Error
// naming the offending segment.
package channel

import (
	"errors"
	"strings"
)

// Segment names one part of a channel name in an *Error.
type Segment string

// The segments of a channel name, as reported by *Error.
const (
	SegmentName     Segment = "name" // the name as a whole (segment count)
	SegmentPrefix   Segment = "prefix"
	SegmentTenant   Segment = "tenant_id"
	SegmentResource Segment = "resource_id"
)

// Shape is the form of every channel name, as error messages spell it.
const Shape = "<prefix>:<tenant uuid>:<resource>"

// Sentinel reasons, matched with errors.Is against an *Error. Each says in
// words what a valid segment is.
var (
	ErrSegments    = errors.New("channel: a channel name is " + Shape + ", three segments separated by ':' (e.g. scan-progress:3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59:42)")
	ErrPrefix      = errors.New("channel: the prefix (first segment) must be a lowercase letter followed by up to 62 lowercase letters, digits or '-'")
	ErrTenant      = errors.New("channel: the tenant id (second segment) must be a UUID in canonical form: lowercase hex digits grouped 8-4-4-4-12 by hyphens (e.g. 3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59)")
	ErrResource    = errors.New("channel: the resource id (third segment) must be 1-128 characters from A-Z a-z 0-9 . _ ~ -")
	ErrColonInside = errors.New("channel: a segment contains ':'")
)

// Error reports which segment of a channel name is malformed and why.
type Error struct {
	Segment Segment // the offending segment
	Reason  error   // one of the Err* sentinels
}

// Error implements error. The message names the segment, says what it must
// be, and recalls the shape of a channel name; it starts with "channel: "
// once, so callers print it as it is.
func (e *Error) Error() string {
	if e.Segment == SegmentName || e.Reason == ErrSegments {
		return e.Reason.Error()
	}
	return e.Reason.Error() + " (" + string(e.Segment) + "); a channel name is " + Shape
}

// Unwrap returns the sentinel reason, so errors.Is(err, ErrTenant) works.
func (e *Error) Unwrap() error { return e.Reason }

// Limits of the segments.
const (
	MaxPrefixLen   = 63
	TenantLen      = 36
	MaxResourceLen = 128
	// MaxLen is the longest possible channel name.
	MaxLen = MaxPrefixLen + 1 + TenantLen + 1 + MaxResourceLen
)

// Name is a valid channel name. The zero Name is not valid; IsZero reports it.
type Name struct {
	s      string
	p1, p2 uint16 // indices of the two ':' separators
}

// Make builds a channel name from its three segments.
func Make(prefix, tenant, resource string) (Name, error) {
	if err := checkPrefix(prefix); err != nil {
		return Name{}, err
	}
	if err := CheckTenant(tenant); err != nil {
		return Name{}, err
	}
	if err := checkResource(resource); err != nil {
		return Name{}, err
	}
	s := prefix + ":" + tenant + ":" + resource
	return Name{s: s, p1: uint16(len(prefix)), p2: uint16(len(prefix) + 1 + len(tenant))}, nil
}

// MustMake is Make for names known valid at compile time; it panics on error.
func MustMake(prefix, tenant, resource string) Name {
	n, err := Make(prefix, tenant, resource)
	if err != nil {
		panic(err)
	}
	return n
}

// Parse parses a channel name. Parse(Make(p, t, r).String()) returns the same
// Name for every valid p, t, r.
func Parse(s string) (Name, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return Name{}, &Error{SegmentName, ErrSegments}
	}
	rest := s[i+1:]
	j := strings.IndexByte(rest, ':')
	if j < 0 {
		return Name{}, &Error{SegmentName, ErrSegments}
	}
	if strings.IndexByte(rest[j+1:], ':') >= 0 {
		return Name{}, &Error{SegmentName, ErrSegments}
	}
	if err := checkPrefix(s[:i]); err != nil {
		return Name{}, err
	}
	if err := CheckTenant(rest[:j]); err != nil {
		return Name{}, err
	}
	if err := checkResource(rest[j+1:]); err != nil {
		return Name{}, err
	}
	// s is the name already: no need to build it again as Make does.
	return Name{s: s, p1: uint16(i), p2: uint16(i + 1 + j)}, nil
}

// String returns the name as "<prefix>:<tenant_id>:<resource_id>".
func (n Name) String() string { return n.s }

// Prefix returns the feature prefix.
func (n Name) Prefix() string {
	if n.s == "" {
		return ""
	}
	return n.s[:n.p1]
}

// Tenant returns the tenant id (canonical UUID).
func (n Name) Tenant() string {
	if n.s == "" {
		return ""
	}
	return n.s[n.p1+1 : n.p2]
}

// Resource returns the resource id.
func (n Name) Resource() string {
	if n.s == "" {
		return ""
	}
	return n.s[n.p2+1:]
}

// IsZero reports whether n is the zero Name (not a valid channel).
func (n Name) IsZero() bool { return n.s == "" }

// MarshalText implements encoding.TextMarshaler.
func (n Name) MarshalText() ([]byte, error) { return []byte(n.s), nil }

// UnmarshalText implements encoding.TextUnmarshaler with Parse's rules.
func (n *Name) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

func checkPrefix(p string) error {
	if strings.IndexByte(p, ':') >= 0 {
		return &Error{SegmentPrefix, ErrColonInside}
	}
	if len(p) == 0 || len(p) > MaxPrefixLen || p[0] < 'a' || p[0] > 'z' {
		return &Error{SegmentPrefix, ErrPrefix}
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return &Error{SegmentPrefix, ErrPrefix}
		}
	}
	return nil
}

// CheckTenant reports whether t is a UUID in canonical lowercase hyphenated
// form (8-4-4-4-12 lowercase hex digits). It returns an *Error for the tenant
// segment otherwise. Identity and publishing use it so that every part of
// Sluice agrees on tenant ids byte for byte.
func CheckTenant(t string) error {
	if strings.IndexByte(t, ':') >= 0 {
		return &Error{SegmentTenant, ErrColonInside}
	}
	if len(t) != TenantLen {
		return &Error{SegmentTenant, ErrTenant}
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return &Error{SegmentTenant, ErrTenant}
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return &Error{SegmentTenant, ErrTenant}
			}
		}
	}
	return nil
}

func checkResource(r string) error {
	if strings.IndexByte(r, ':') >= 0 {
		return &Error{SegmentResource, ErrColonInside}
	}
	if len(r) == 0 || len(r) > MaxResourceLen {
		return &Error{SegmentResource, ErrResource}
	}
	for i := 0; i < len(r); i++ {
		if !unreserved(r[i]) {
			return &Error{SegmentResource, ErrResource}
		}
	}
	return nil
}

// unreserved reports whether c is in [A-Za-z0-9._~-] (RFC 3986 unreserved).
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
