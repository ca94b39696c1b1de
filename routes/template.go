package routes

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/internal/backendcall"
)

// tenantPlaceholder is the placeholder for the principal's active tenant. It
// can never be a path wildcard: the tenant always comes from the credential.
const tenantPlaceholder = "tenant"

// parsePath checks a route path and returns its wildcard names. A path is
// absolute, has no empty segment and no trailing slash, and each segment is
// either literal or exactly one wildcard {name}; {name...} and {$} are
// refused, since a resource id never spans segments.
func parsePath(p string) ([]string, error) {
	switch {
	case p == "":
		return nil, errors.New(`"path" is required`)
	case !strings.HasPrefix(p, "/"):
		return nil, fmt.Errorf("path %q must start with /", p)
	case p == "/" || strings.HasSuffix(p, "/"):
		return nil, fmt.Errorf("path %q must not end with /", p)
	case strings.ContainsAny(p, " \t\r\n?#"):
		return nil, fmt.Errorf("path %q holds a space, ? or #", p)
	}
	var wild []string
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" {
			return nil, fmt.Errorf("path %q has an empty segment", p)
		}
		if !strings.ContainsAny(seg, "{}") {
			continue
		}
		if seg[0] != '{' || seg[len(seg)-1] != '}' {
			return nil, fmt.Errorf("path segment %q: a wildcard must be a whole segment", seg)
		}
		name := seg[1 : len(seg)-1]
		switch {
		case name == tenantPlaceholder:
			return nil, errors.New("path wildcard {tenant} is reserved: the tenant comes from the caller's credential")
		case !isIdent(name):
			return nil, fmt.Errorf("path segment %q: wildcards are {name} with a Go identifier as name", seg)
		case slices.Contains(wild, name):
			return nil, fmt.Errorf("path wildcard {%s} appears twice", name)
		}
		wild = append(wild, name)
	}
	return wild, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// template is a string with {name} placeholders, split into literal and
// placeholder parts.
type template []part

type part struct {
	lit  string
	name string // placeholder name when non-empty
}

// parseTemplate splits s into parts; every placeholder must be {tenant} or
// one of wild.
func parseTemplate(s string, wild []string) (template, error) {
	var t template
	for s != "" {
		i := strings.IndexAny(s, "{}")
		if i < 0 {
			t = append(t, part{lit: s})
			break
		}
		if s[i] == '}' {
			return nil, errors.New("unbalanced }")
		}
		if i > 0 {
			t = append(t, part{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, errors.New("unbalanced {")
		}
		name := s[i+1 : i+j]
		if name != tenantPlaceholder && !slices.Contains(wild, name) {
			return nil, fmt.Errorf("unknown placeholder {%s}: use {tenant} or a wildcard of the path", name)
		}
		t = append(t, part{name: name})
		s = s[i+j+1:]
	}
	return t, nil
}

// fill substitutes vals into t, passing each value through esc when esc is
// not nil.
func (t template) fill(vals map[string]string, esc func(string) string) string {
	var b strings.Builder
	for _, p := range t {
		if p.name == "" {
			b.WriteString(p.lit)
			continue
		}
		v := vals[p.name]
		if esc != nil {
			v = esc(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// chanTemplate is a channel name template: a literal prefix, the tenant
// segment (always {tenant}) and a resource template.
type chanTemplate struct {
	prefix   string
	resource template
}

// sampleTenant is a canonical tenant id used to check templates at load.
const sampleTenant = "00000000-0000-0000-0000-000000000000"

// parseChannel checks a channel template "<prefix>:{tenant}:<resource>". The
// prefix is literal; the tenant segment is exactly {tenant}, so no route can
// name another tenant's channel; the resource mixes literal characters of a
// resource id with placeholders.
func parseChannel(s string, wild []string) (chanTemplate, error) {
	segs := strings.Split(s, ":")
	if len(segs) != 3 {
		return chanTemplate{}, errors.New("a channel template has three ':'-separated segments: <prefix>:{tenant}:<resource>")
	}
	if segs[1] != "{"+tenantPlaceholder+"}" {
		return chanTemplate{}, errors.New("the tenant segment must be exactly {tenant}")
	}
	if strings.ContainsAny(segs[0], "{}") {
		return chanTemplate{}, errors.New("the prefix must be literal")
	}
	res, err := parseTemplate(segs[2], wild)
	if err != nil {
		return chanTemplate{}, err
	}
	if len(res) == 0 {
		return chanTemplate{}, errors.New("the resource segment is empty")
	}
	// Check the literal parts with a sample value for each placeholder: a
	// one-character value must make a valid name.
	sample := map[string]string{tenantPlaceholder: sampleTenant}
	for _, w := range wild {
		sample[w] = "x"
	}
	if _, err := channel.Make(segs[0], sampleTenant, res.fill(sample, nil)); err != nil {
		return chanTemplate{}, err
	}
	return chanTemplate{prefix: segs[0], resource: res}, nil
}

// errDotSegment refuses "." and "..", valid resource ids that would change
// the meaning of an authorizer URL's path.
var errDotSegment = errors.New("routes: \".\" and \"..\" are not resource ids here")

// checkValue reports whether a path value is a valid resource id (protocol.md §1):
// 1–128 characters from [A-Za-z0-9._~-], and not "." or "..".
func checkValue(v string) error {
	if v == "" || len(v) > channel.MaxResourceLen {
		return channel.ErrResource
	}
	if !backendcall.SegmentSafe(v) {
		return errDotSegment
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~') {
			return channel.ErrResource
		}
	}
	return nil
}
