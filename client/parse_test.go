package client

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	sse "github.com/tmaxmax/go-sse"
)

func parseAll(t testing.TB, r io.Reader, maxLine int) ([]Event, error) {
	t.Helper()
	rd := NewReader(r, maxLine)
	var out []Event
	for {
		ev, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return out, err
		}
		out = append(out, ev)
	}
}

func TestReaderTable(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event
	}{
		{"simple", "data: a\n\n", []Event{{Type: "message", Data: "a"}}},
		{"crlf", "id: 1\r\nevent: x.y\r\ndata: a\r\n\r\n", []Event{{ID: "1", Type: "x.y", Data: "a"}}},
		{"cr", "data: a\rdata: b\r\r", []Event{{Type: "message", Data: "a\nb"}}},
		{"mixed endings", "data: a\r\ndata: b\rdata: c\n\r\n", []Event{{Type: "message", Data: "a\nb\nc"}}},
		{"bom", "\xEF\xBB\xBFdata: a\n\n", []Event{{Type: "message", Data: "a"}}},
		{"second bom is a field name", "\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n", []Event{{Type: "message", Data: "b"}}},
		{"multi-line data", "data: {\ndata:  \"a\": 1\ndata: }\n\n", []Event{{Type: "message", Data: "{\n \"a\": 1\n}"}}},
		{"no space after colon", "data:a\n\n", []Event{{Type: "message", Data: "a"}}},
		{"only one space stripped", "data:  a\n\n", []Event{{Type: "message", Data: " a"}}},
		{"field without colon", "data\n\n", []Event{{Type: "message", Data: ""}}},
		{"data field twice empty", "data\ndata\n\n", []Event{{Type: "message", Data: "\n"}}},
		{"no data no dispatch", "event: x.y\nid: 7\n\ndata: a\n\n", []Event{{ID: "7", Type: "message", Data: "a"}}},
		{"comment", ": keep-alive\n\n: x\ndata: a\n\n", []Event{{Type: "message", Data: "a"}}},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []Event{{ID: "1", Type: "message", Data: "a"}, {ID: "1", Type: "message", Data: "b"}}},
		{"id persists", "id: 1\ndata: a\n\ndata: b\n\n", []Event{{ID: "1", Type: "message", Data: "a"}, {ID: "1", Type: "message", Data: "b"}}},
		{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\n", []Event{{ID: "1", Type: "message", Data: "a"}, {ID: "", Type: "message", Data: "b"}}},
		{"unknown field", "foo: bar\ndata: a\n\n", []Event{{Type: "message", Data: "a"}}},
		{"type resets", "event: x.y\ndata: a\n\ndata: b\n\n", []Event{{Type: "x.y", Data: "a"}, {Type: "message", Data: "b"}}},
		{"unterminated final block", "data: a\n\ndata: b\n", []Event{{Type: "message", Data: "a"}}},
		{"unterminated final line", "data: a\n\ndata: b", []Event{{Type: "message", Data: "a"}}},
		{"colon in value", "data: a:b: c\n\n", []Event{{Type: "message", Data: "a:b: c"}}},
		{"leading blank lines", "\n\n\ndata: a\n\n", []Event{{Type: "message", Data: "a"}}},
		{"case sensitive names", "Data: a\nDATA: b\ndata: c\n\n", []Event{{Type: "message", Data: "c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", strings.NewReader(tt.in)},
				{"byte by byte", iotest.OneByteReader(strings.NewReader(tt.in))},
				{"half", iotest.HalfReader(strings.NewReader(tt.in))},
			} {
				got, err := parseAll(t, r.r, 0)
				if err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				if !equalEvents(got, tt.want) {
					t.Errorf("%s: got %q, want %q", r.name, got, tt.want)
				}
			}
		})
	}
}

func equalEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReaderRetry(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"retry: 2000\n\n", 2 * time.Second, true},
		{"retry:15\n\n", 15 * time.Millisecond, true},
		{"retry: 0\n\n", 0, true},
		{"retry: -5\n\n", 0, false},
		{"retry: +5\n\n", 0, false},
		{"retry: 5s\n\n", 0, false},
		{"retry: 1.5\n\n", 0, false},
		{"retry:\n\n", 0, false},
		{"retry:  5\n\n", 0, false},
		{"retry: 10\n\nretry: x\n\n", 10 * time.Millisecond, true},
	}
	for _, tt := range tests {
		rd := NewReader(strings.NewReader(tt.in), 0)
		if _, err := rd.Next(); err != io.EOF {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if d, ok := rd.Retry(); d != tt.want || ok != tt.ok {
			t.Errorf("%q: retry %v %v, want %v %v", tt.in, d, ok, tt.want, tt.ok)
		}
	}
}

func TestReaderLastEventID(t *testing.T) {
	rd := NewReader(strings.NewReader("id: 9\n\n"), 0)
	rd.SetLastEventID("start")
	if rd.LastEventID() != "start" {
		t.Fatal(rd.LastEventID())
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatal(err)
	}
	if rd.LastEventID() != "9" {
		t.Errorf("id-only block: last id %q, want 9", rd.LastEventID())
	}
}

func TestReaderLineLimit(t *testing.T) {
	in := "data: " + strings.Repeat("x", 100) + "\n\n"
	if _, err := parseAll(t, strings.NewReader(in), 106); err != nil {
		t.Fatalf("line of exactly the limit: %v", err)
	}
	if _, err := parseAll(t, strings.NewReader(in), 105); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v, want ErrLineTooLong", err)
	}
	// An endless line from an endless reader must stop, not grow.
	endless := io.MultiReader(strings.NewReader("data: "), infinite('x'))
	rd := NewReader(endless, 4096)
	if _, err := rd.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v, want ErrLineTooLong", err)
	}
	if cap(rd.buf) > 4097 {
		t.Errorf("buffer grew to %d", cap(rd.buf))
	}
}

type infinite byte

func (b infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	got, err := parseAll(t, r, 0)
	if !errors.Is(err, boom) || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
}

// FuzzParse checks the Reader against go-sse's parser. The two must agree on
// every event carrying data, except where go-sse knowingly differs from the
// standard: it dispatches blocks without data (skipped by comparing only
// non-empty data) and strips a byte order mark that is not at the start of
// the stream (inputs with such a mark are not compared).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"data: a\n\n",
		"retry: 10\nid: 1\nevent: x.y\ndata: a\ndata: b\n\n",
		"\xEF\xBB\xBFdata: a\r\n\r\n",
		"data: a\rid: 2\x00\r\rdata:b\n\n",
		": c\ndata\n\ndata:  x\n\nid\ndata: y\n\n",
		"event: stream-open\nid: abc\ndata: {\"channels\":[]}\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := parseAll(t, bytes.NewReader(in), len(in)+1)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		small, err := parseAll(t, iotest.OneByteReader(bytes.NewReader(in)), len(in)+1)
		if err != nil || !equalEvents(got, small) {
			t.Fatalf("byte-by-byte read differs: %q vs %q (%v)", small, got, err)
		}
		if bytes.Contains(in[min(len(in), 1):], []byte("\xEF\xBB\xBF")) {
			return
		}
		var ref []Event
		for ev, err := range sse.Read(bytes.NewReader(in), &sse.ReadConfig{MaxEventSize: len(in) + 16}) {
			if err != nil {
				t.Skipf("go-sse: %v", err)
			}
			if ev.Data == "" {
				continue
			}
			typ := ev.Type
			if typ == "" {
				typ = "message"
			}
			ref = append(ref, Event{ID: ev.LastEventID, Type: typ, Data: ev.Data})
		}
		var mine []Event
		for _, ev := range got {
			if ev.Data != "" {
				mine = append(mine, ev)
			}
		}
		if !equalEvents(mine, ref) {
			t.Fatalf("input %q:\n got %q\nwant %q", in, mine, ref)
		}
	})
}
