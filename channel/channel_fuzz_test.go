package channel

import (
	"errors"
	"strings"
	"testing"
)

func addSeeds(f *testing.F) {
	f.Helper()
	for _, tt := range parseErrCases() {
		f.Add(tt.in)
	}
	for _, s := range []string{
		joined("scan-progress", tenantA, "42"),
		joined("a", tenantB, "~"),
		joined(strings.Repeat("a", 63), tenantA, strings.Repeat("Z", 128)),
		joined("p", tenantA, "r.s_t~u-v"),
	} {
		f.Add(s)
	}
}

// FuzzParse checks that Parse never panics, that every error is a *Error
// naming a known segment, and that a name it accepts is the one Make builds
// from its parts and prints back as the input.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse(%q): error %v is not a *Error", s, err)
			}
			switch ce.Segment {
			case SegmentName, SegmentPrefix, SegmentTenant, SegmentResource:
			default:
				t.Fatalf("Parse(%q): unknown segment %q", s, ce.Segment)
			}
			if !n.IsZero() {
				t.Fatalf("Parse(%q) returned %q with error %v", s, n, err)
			}
			return
		}
		if n.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, n.String())
		}
		if len(s) > MaxLen {
			t.Fatalf("Parse accepted %d bytes > MaxLen", len(s))
		}
		m, err := Make(n.Prefix(), n.Tenant(), n.Resource())
		if err != nil {
			t.Fatalf("Make(parts of %q): %v", s, err)
		}
		if m != n {
			t.Fatalf("Make(parts of %q) = %#v, Parse gave %#v", s, m, n)
		}
		if strings.Count(s, ":") != 2 {
			t.Fatalf("Parse accepted %q with %d colons", s, strings.Count(s, ":"))
		}
	})
}

// FuzzMake checks Parse(Make(x).String()) == Make(x) for every valid x, and
// that Parse never accepts the join of parts that Make refuses.
func FuzzMake(f *testing.F) {
	f.Add("scan-progress", tenantA, "42")
	f.Add("p", tenantB, strings.Repeat("r", 128))
	f.Add("P", tenantA, "r")
	f.Add("p", strings.ToUpper(tenantA), "r")
	f.Add("p", "{"+tenantA+"}", "r")
	f.Add("p", tenantA, "a:b")
	f.Add("a:b", tenantA, "r")
	f.Add("p", tenantA, "")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, prefix, tenant, resource string) {
		n, err := Make(prefix, tenant, resource)
		s := prefix + ":" + tenant + ":" + resource
		p, perr := Parse(s)
		if err != nil {
			if perr == nil {
				t.Fatalf("Make(%q, %q, %q) refused (%v) but Parse(%q) accepted", prefix, tenant, resource, err, s)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Make: error %v is not a *Error", err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("Parse(Make(%q, %q, %q)): %v", prefix, tenant, resource, perr)
		}
		if p != n {
			t.Fatalf("Parse(Make(x)) = %#v, want %#v", p, n)
		}
		if n.String() != s || n.Prefix() != prefix || n.Tenant() != tenant || n.Resource() != resource {
			t.Fatalf("Make(%q, %q, %q) = %q with parts %q, %q, %q", prefix, tenant, resource, n, n.Prefix(), n.Tenant(), n.Resource())
		}
	})
}
