package event

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/channel"
)

const testTenant = "3f1c2b4a-9d8e-4c7b-a6f5-0e1d2c3b4a59"

// testChannel returns a valid channel name whose resource is r.
func testChannel(t testing.TB, r string) channel.Name {
	t.Helper()
	n, err := channel.Make("scan-progress", testTenant, r)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestValidType(t *testing.T) {
	valid := []string{
		"scan.progress",
		"llm.token",
		"a.b.c",
		"a_1.b2",
		"a.b",
		"a_.b_",
		"stream.open", // only the "stream-" prefix is reserved
		"streamx.y",
		strings.Repeat("a", 127) + "." + strings.Repeat("b", 128), // 256 chars
	}
	for _, s := range valid {
		if err := ValidType(s); err != nil {
			t.Errorf("ValidType(%q) = %v, want nil", s, err)
		}
	}

	tests := []struct {
		in   string
		want error
	}{
		{"", ErrTypeSyntax},
		{"scan", ErrTypeSyntax},
		{".a", ErrTypeSyntax},
		{"a.", ErrTypeSyntax},
		{"a..b", ErrTypeSyntax},
		{".", ErrTypeSyntax},
		{"A.b", ErrTypeSyntax},
		{"a.B", ErrTypeSyntax},
		{"1a.b", ErrTypeSyntax},
		{"_a.b", ErrTypeSyntax},
		{"a.1b", ErrTypeSyntax},
		{"a._b", ErrTypeSyntax},
		{"a-b.c", ErrTypeSyntax},
		{"a.b c", ErrTypeSyntax},
		{"a.b\n", ErrTypeSyntax},
		{"a.b\x00", ErrTypeSyntax},
		{"a.bé", ErrTypeSyntax},
		{"stream-open", ErrTypeReserved},
		{"stream-reset", ErrTypeReserved},
		{"stream-error", ErrTypeReserved},
		{"stream-x.y", ErrTypeReserved},
		{"stream-", ErrTypeReserved},
		{strings.Repeat("a", 128) + "." + strings.Repeat("b", 128), ErrTypeSyntax}, // 257 chars
	}
	for _, tt := range tests {
		if err := ValidType(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("ValidType(%q) = %v, want %v", tt.in, err, tt.want)
		}
	}
	for _, typ := range []string{TypeOpen, TypeReset, TypeError} {
		if !strings.HasPrefix(typ, Reserved) {
			t.Errorf("server type %q is not reserved", typ)
		}
	}
}

// FuzzValidType checks ValidType against a direct reading of the rule of
// protocol.md §7: ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$, at most MaxTypeLen bytes,
// nothing starting with "stream-".
func FuzzValidType(f *testing.F) {
	for _, s := range []string{"scan.progress", "a..b", "stream-x.y", "A.b", "a.1b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) <= MaxTypeLen && !strings.HasPrefix(s, Reserved)
		parts := strings.Split(s, ".")
		want = want && len(parts) >= 2
		for _, p := range parts {
			if p == "" || p[0] < 'a' || p[0] > 'z' {
				want = false
				break
			}
			for _, c := range []byte(p) {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
					want = false
				}
			}
		}
		if got := ValidType(s) == nil; got != want {
			t.Fatalf("ValidType(%q) valid = %v, want %v", s, got, want)
		}
	})
}

func TestPositionString(t *testing.T) {
	tests := []struct {
		p    Position
		want string
	}{
		{Position{}, "0-0"},
		{Position{Epoch: 35, Offset: 7}, "z-7"},
		{Position{Epoch: 36, Offset: 1000}, "10-1000"},
		{Position{Epoch: math.MaxUint64, Offset: math.MaxUint64}, "3w5e11264sgsf-18446744073709551615"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestFrame(t *testing.T) {
	c := NewCodec([]byte("frame key"))
	ch := testChannel(t, "42")
	e := &Event{
		Channel: ch,
		Type:    "scan.progress",
		Data:    []byte(`{"pct":50}`),
		Pos:     Position{Epoch: 7, Offset: 12},
	}
	frame, seg, body := e.Frame(c)

	if want := c.Segment(ch, e.Pos); seg != want {
		t.Errorf("seg = %q, want %q", seg, want)
	}
	if want := "event: scan.progress\ndata: {\"pct\":50}\n\n"; string(body) != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	if want := "id: " + seg + "\n" + string(body); string(frame) != want {
		t.Errorf("frame = %q, want %q", frame, want)
	}
	pos, named, err := c.Decode(seg, []channel.Name{ch})
	if err != nil || !named[0] || pos[0] != e.Pos {
		t.Errorf("Decode(seg) = %v, %v, %v; want %v", pos, named, err, e.Pos)
	}

	// Later calls return the same cached bytes, even with another codec.
	f2, s2, b2 := e.Frame(NewCodec([]byte("other key")))
	if &f2[0] != &frame[0] || s2 != seg || &b2[0] != &body[0] {
		t.Error("second Frame call did not return the cached encoding")
	}
}

func TestFrameMultiline(t *testing.T) {
	c := NewCodec([]byte("k"))
	e := &Event{Channel: testChannel(t, "r"), Type: "llm.token", Data: []byte("a\r\nb\n"), Pos: Position{Epoch: 1, Offset: 1}}
	_, seg, _ := e.Frame(c)
	frame, _, _ := e.Frame(c)
	want := "id: " + seg + "\nevent: llm.token\ndata: a\ndata: b\ndata: \n\n"
	if string(frame) != want {
		t.Errorf("frame = %q, want %q", frame, want)
	}
}

// TestFrameConcurrent calls Frame on one event from many goroutines at once;
// run with -race. All must see the same bytes.
func TestFrameConcurrent(t *testing.T) {
	c := NewCodec([]byte("concurrent key"))
	for round := range 20 {
		e := &Event{
			Channel: testChannel(t, "r"),
			Type:    "llm.token",
			Data:    []byte("tok\nen"),
			Pos:     Position{Epoch: 3, Offset: uint64(round + 1)},
		}
		const n = 64
		type result struct {
			frame, body []byte
			seg         string
		}
		results := make([]result, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				f, s, b := e.Frame(c)
				results[i] = result{f, b, s}
			})
		}
		close(start)
		wg.Wait()

		seg := c.Segment(e.Channel, e.Pos)
		body := AppendBlock(nil, "", e.Type, e.Data)
		want := "id: " + seg + "\n" + string(body)
		for i, r := range results {
			if string(r.frame) != want || r.seg != seg || !bytes.Equal(r.body, body) {
				t.Fatalf("round %d goroutine %d: frame %q seg %q body %q; want frame %q", round, i, r.frame, r.seg, r.body, want)
			}
			if &r.frame[0] != &results[0].frame[0] {
				t.Fatalf("round %d goroutine %d: frame not shared", round, i)
			}
		}
	}
}
