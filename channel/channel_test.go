package channel

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const (
	tenantA = "3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59"
	tenantB = "00000000-0000-0000-0000-000000000000"
)

func TestMakeValid(t *testing.T) {
	tests := []struct {
		name                     string
		prefix, tenant, resource string
	}{
		{"spec example", "scan-progress", tenantA, "42"},
		{"one-letter prefix", "a", tenantB, "x"},
		{"prefix with digits and hyphens", "a1-b2--", tenantA, "r"},
		{"prefix trailing hyphen", "llm-", tenantA, "r"},
		{"63-char prefix", "a" + strings.Repeat("b", 62), tenantA, "r"},
		{"tenant of f digits", "p", "ffffffff-ffff-ffff-ffff-ffffffffffff", "r"},
		{"all resource characters", "p", tenantA, "AZaz09._~-"},
		{"resource of dots", "p", tenantA, ".."},
		{"resource of one tilde", "p", tenantA, "~"},
		{"128-char resource", "p", tenantA, strings.Repeat("R", 128)},
		{"longest name", strings.Repeat("a", 63), tenantA, strings.Repeat("9", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Make(tt.prefix, tt.tenant, tt.resource)
			if err != nil {
				t.Fatalf("Make(%q, %q, %q): %v", tt.prefix, tt.tenant, tt.resource, err)
			}
			want := tt.prefix + ":" + tt.tenant + ":" + tt.resource
			if n.String() != want {
				t.Errorf("String() = %q, want %q", n.String(), want)
			}
			if n.Prefix() != tt.prefix || n.Tenant() != tt.tenant || n.Resource() != tt.resource {
				t.Errorf("accessors = %q, %q, %q", n.Prefix(), n.Tenant(), n.Resource())
			}
			if n.IsZero() {
				t.Error("IsZero() = true for a valid name")
			}
			p, err := Parse(want)
			if err != nil {
				t.Fatalf("Parse(%q): %v", want, err)
			}
			if p != n {
				t.Errorf("Parse(Make(x)) = %#v, want %#v", p, n)
			}
			if len(want) > MaxLen {
				t.Errorf("len %d > MaxLen %d", len(want), MaxLen)
			}
		})
	}
}

// errCase is a malformed input and the error it must produce.
type errCase struct {
	name    string
	in      string
	segment Segment
	reason  error
}

// joined builds a three-segment name without validating it.
func joined(prefix, tenant, resource string) string {
	return prefix + ":" + tenant + ":" + resource
}

func parseErrCases() []errCase {
	return []errCase{
		// Segment count.
		{"empty", "", SegmentName, ErrSegments},
		{"one segment", "scan-progress", SegmentName, ErrSegments},
		{"two segments", "scan-progress:" + tenantA, SegmentName, ErrSegments},
		{"four segments", joined("p", tenantA, "r") + ":x", SegmentName, ErrSegments},
		{"colon inside resource", joined("p", tenantA, "a:b"), SegmentName, ErrSegments},
		{"colon inside tenant (urn:uuid:)", joined("p", "urn:uuid:"+tenantA, "r"), SegmentName, ErrSegments},
		{"only colons", "::", SegmentPrefix, ErrPrefix},
		{"trailing colon", joined("p", tenantA, "r") + ":", SegmentName, ErrSegments},

		// Prefix.
		{"empty prefix", joined("", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"uppercase prefix", joined("Scan", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"uppercase inside prefix", joined("scAn", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"leading digit", joined("1scan", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"leading hyphen", joined("-scan", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"underscore", joined("scan_progress", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"dot", joined("scan.progress", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"64-char prefix", joined("a"+strings.Repeat("b", 63), tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"unicode prefix", joined("scän", tenantA, "r"), SegmentPrefix, ErrPrefix},
		{"space in prefix", joined("scan progress", tenantA, "r"), SegmentPrefix, ErrPrefix},

		// Tenant.
		{"empty tenant", joined("p", "", "r"), SegmentTenant, ErrTenant},
		{"uppercase tenant", joined("p", strings.ToUpper(tenantA), "r"), SegmentTenant, ErrTenant},
		{"one uppercase hex digit", joined("p", "3F1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59", "r"), SegmentTenant, ErrTenant},
		{"braced tenant", joined("p", "{"+tenantA+"}", "r"), SegmentTenant, ErrTenant},
		{"no hyphens", joined("p", strings.ReplaceAll(tenantA, "-", ""), "r"), SegmentTenant, ErrTenant},
		{"hyphen misplaced", joined("p", "3f1c2b4a9-d8e-4c7b-a6f5-0e1d2c3b4a59", "r"), SegmentTenant, ErrTenant},
		{"35 chars", joined("p", tenantA[:35], "r"), SegmentTenant, ErrTenant},
		{"37 chars", joined("p", tenantA+"0", "r"), SegmentTenant, ErrTenant},
		{"non-hex digit", joined("p", "3f1c2b4g-9d8e-4c7b-a6f5-0e1d2c3b4a59", "r"), SegmentTenant, ErrTenant},
		{"hyphens only", joined("p", strings.Repeat("-", 36), "r"), SegmentTenant, ErrTenant},

		// Resource.
		{"empty resource", joined("p", tenantA, ""), SegmentResource, ErrResource},
		{"129-char resource", joined("p", tenantA, strings.Repeat("r", 129)), SegmentResource, ErrResource},
		{"slash", joined("p", tenantA, "a/b"), SegmentResource, ErrResource},
		{"percent", joined("p", tenantA, "a%20b"), SegmentResource, ErrResource},
		{"space", joined("p", tenantA, "a b"), SegmentResource, ErrResource},
		{"unicode", joined("p", tenantA, "caf\u00e9"), SegmentResource, ErrResource},
		{"plus", joined("p", tenantA, "a+b"), SegmentResource, ErrResource},
		{"newline", joined("p", tenantA, "a\n"), SegmentResource, ErrResource},
		{"NUL", joined("p", tenantA, "a\x00"), SegmentResource, ErrResource},
		{"invalid UTF-8", joined("p", tenantA, "a\xff"), SegmentResource, ErrResource},
	}
}

// checkErr asserts that err is an *Error for segment with reason.
func checkErr(t *testing.T, err error, segment Segment, reason error) {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *channel.Error", err, err)
	}
	if ce.Segment != segment {
		t.Errorf("Segment = %q, want %q", ce.Segment, segment)
	}
	if !errors.Is(err, reason) {
		t.Errorf("errors.Is(%v, %v) = false", err, reason)
	}
	msg := err.Error()
	if segment != SegmentName && !strings.Contains(msg, string(segment)) {
		t.Errorf("Error() = %q: want the segment named", msg)
	}
	if !strings.HasPrefix(msg, "channel: ") || strings.Contains(msg, "channel: channel:") {
		t.Errorf("Error() = %q: want the package prefix exactly once", msg)
	}
	if !strings.Contains(msg, Shape) {
		t.Errorf("Error() = %q: want the expected shape %s", msg, Shape)
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tt := range parseErrCases() {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error", tt.in, n)
			}
			if !n.IsZero() {
				t.Errorf("Parse returned a non-zero Name with an error: %q", n)
			}
			checkErr(t, err, tt.segment, tt.reason)
		})
	}
}

func TestMakeInvalid(t *testing.T) {
	tests := []struct {
		name                     string
		prefix, tenant, resource string
		segment                  Segment
		reason                   error
	}{
		{"colon in prefix", "a:b", tenantA, "r", SegmentPrefix, ErrColonInside},
		{"colon in tenant", "p", "urn:uuid:" + tenantA, "r", SegmentTenant, ErrColonInside},
		{"colon in resource", "p", tenantA, "a:b", SegmentResource, ErrColonInside},
		{"uppercase prefix", "P", tenantA, "r", SegmentPrefix, ErrPrefix},
		{"braced tenant", "p", "{" + tenantA + "}", "r", SegmentTenant, ErrTenant},
		{"slash in resource", "p", tenantA, "a/b", SegmentResource, ErrResource},
		// The first bad segment, left to right, is reported.
		{"all bad", "P", "T", "", SegmentPrefix, ErrPrefix},
		{"tenant and resource bad", "p", "T", "", SegmentTenant, ErrTenant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Make(tt.prefix, tt.tenant, tt.resource)
			if err == nil {
				t.Fatalf("Make = %q, want error", n)
			}
			if !n.IsZero() {
				t.Errorf("Make returned a non-zero Name with an error: %q", n)
			}
			checkErr(t, err, tt.segment, tt.reason)
		})
	}
	// Every malformed three-segment input of Parse is refused by Make too,
	// with the same error.
	for _, tt := range parseErrCases() {
		parts := strings.Split(tt.in, ":")
		if len(parts) != 3 {
			continue
		}
		t.Run("parse case/"+tt.name, func(t *testing.T) {
			_, err := Make(parts[0], parts[1], parts[2])
			checkErr(t, err, tt.segment, tt.reason)
		})
	}
}

func TestCheckTenant(t *testing.T) {
	if err := CheckTenant(tenantA); err != nil {
		t.Errorf("CheckTenant(%q) = %v", tenantA, err)
	}
	for _, bad := range []string{
		"",
		strings.ToUpper(tenantA),
		"{" + tenantA + "}",
		"urn:uuid:" + tenantA,
		strings.ReplaceAll(tenantA, "-", ""),
		tenantA + " ",
		" " + tenantA[1:],
	} {
		err := CheckTenant(bad)
		if err == nil {
			t.Errorf("CheckTenant(%q) = nil", bad)
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Segment != SegmentTenant {
			t.Errorf("CheckTenant(%q) = %v, want a tenant_id *Error", bad, err)
		}
	}
}

func TestMustMake(t *testing.T) {
	n := MustMake("p", tenantA, "r")
	if n.String() != "p:"+tenantA+":r" {
		t.Errorf("MustMake = %q", n)
	}
	defer func() {
		err, _ := recover().(error)
		if !errors.Is(err, ErrResource) {
			t.Errorf("MustMake panicked with %v, want ErrResource", err)
		}
	}()
	MustMake("p", tenantA, "")
}

func TestZeroName(t *testing.T) {
	var n Name
	if !n.IsZero() {
		t.Error("IsZero() = false for the zero Name")
	}
	if n.String() != "" {
		t.Errorf("String() = %q", n.String())
	}
	// A zero Name is not a channel, but reading it must not panic: it ends
	// up in logs and zero-valued structs.
	for name, f := range map[string]func() string{
		"Prefix": n.Prefix, "Tenant": n.Tenant, "Resource": n.Resource,
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("zero Name: %s() panicked: %v", name, r)
				}
			}()
			if got := f(); got != "" {
				t.Errorf("zero Name: %s() = %q, want \"\"", name, got)
			}
		}()
	}
}

func TestText(t *testing.T) {
	n := MustMake("scan-progress", tenantA, "42")
	b, err := n.MarshalText()
	if err != nil || string(b) != n.String() {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var got Name
	if err := got.UnmarshalText(b); err != nil || got != n {
		t.Fatalf("UnmarshalText(%q) = %q, %v", b, got, err)
	}

	// A failed UnmarshalText leaves the Name as it was.
	before := got
	err = got.UnmarshalText([]byte("scan-progress:" + strings.ToUpper(tenantA) + ":42"))
	checkErr(t, err, SegmentTenant, ErrTenant)
	if got != before {
		t.Errorf("failed UnmarshalText changed the Name to %q", got)
	}

	// Through encoding/json, as a value and as a map key.
	type doc struct {
		C Name         `json:"c"`
		M map[Name]int `json:"m"`
	}
	j, err := json.Marshal(doc{C: n, M: map[Name]int{n: 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"c":"scan-progress:` + tenantA + `:42","m":{"scan-progress:` + tenantA + `:42":1}}`
	if string(j) != want {
		t.Errorf("json = %s, want %s", j, want)
	}
	var d doc
	if err := json.Unmarshal(j, &d); err != nil || d.C != n || d.M[n] != 1 {
		t.Errorf("json round trip = %+v, %v", d, err)
	}
	err = json.Unmarshal([]byte(`{"c":"a/b"}`), &d)
	checkErr(t, err, SegmentName, ErrSegments)
}

// TestErrorMessages pins what each refusal tells the user to do: the
// segment at fault, what it must be in words, and the shape of a name.
func TestErrorMessages(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"welcome", []string{"a channel name is <prefix>:<tenant uuid>:<resource>", "three segments"}},
		{"demo:welcome", []string{"<prefix>:<tenant uuid>:<resource>"}},
		{"Demo:" + tenantA + ":1", []string{"prefix (first segment)", "lowercase letter", "(prefix)", Shape}},
		{"demo:NOT-A-UUID:1", []string{"tenant id (second segment)", "8-4-4-4-12", "(tenant_id)", Shape}},
		{"demo:" + tenantA + ":a/b", []string{"resource id (third segment)", "1-128 characters", "(resource_id)", Shape}},
	} {
		_, err := Parse(tt.in)
		if err == nil {
			t.Fatalf("Parse(%q): no error", tt.in)
		}
		msg := err.Error()
		if strings.Count(msg, "channel: ") != 1 {
			t.Errorf("Parse(%q) = %q: the prefix must appear once", tt.in, msg)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("Parse(%q) = %q: want %q", tt.in, msg, w)
			}
		}
	}
}
