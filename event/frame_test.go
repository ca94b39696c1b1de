package event

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	sse "github.com/tmaxmax/go-sse"
)

func TestAppendData(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "data: \n"},
		{"one line", `{"a":1}`, "data: {\"a\":1}\n"},
		{"LF", "a\nb", "data: a\ndata: b\n"},
		{"CRLF", "a\r\nb", "data: a\ndata: b\n"},
		{"CR", "a\rb", "data: a\ndata: b\n"},
		{"mixed", "a\rb\nc\r\nd", "data: a\ndata: b\ndata: c\ndata: d\n"},
		{"LF CR is two breaks", "a\n\rb", "data: a\ndata: \ndata: b\n"},
		{"CR CR", "a\r\rb", "data: a\ndata: \ndata: b\n"},
		{"trailing LF", "a\n", "data: a\ndata: \n"},
		{"trailing CRLF", "a\r\n", "data: a\ndata: \n"},
		{"trailing CR", "a\r", "data: a\ndata: \n"},
		{"only LF", "\n", "data: \ndata: \n"},
		{"leading LF", "\na", "data: \ndata: a\n"},
		{"leading space kept", " a", "data:  a\n"},
		{"colon kept", "a: b", "data: a: b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendData([]byte("x"), []byte(tt.data))
			if string(got) != "x"+tt.want {
				t.Errorf("AppendData(%q) = %q, want %q", tt.data, got[1:], tt.want)
			}
		})
	}
}

func TestAppendBlock(t *testing.T) {
	tests := []struct {
		name, id, typ, data, want string
	}{
		{"all fields", "c1", "scan.progress", `{"pct":5}`, "id: c1\nevent: scan.progress\ndata: {\"pct\":5}\n\n"},
		{"no id", "", "scan.progress", "x", "event: scan.progress\ndata: x\n\n"},
		{"no type", "c1", "", "x", "id: c1\ndata: x\n\n"},
		{"data only", "", "", "x", "data: x\n\n"},
		{"empty data", "", "", "", "data: \n\n"},
		{"multi-line", "c", "a.b", "1\r\n2\r3\n", "id: c\nevent: a.b\ndata: 1\ndata: 2\ndata: 3\ndata: \n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendBlock([]byte("prev\n\n"), tt.id, tt.typ, []byte(tt.data))
			if want := "prev\n\n" + tt.want; string(got) != want {
				t.Errorf("AppendBlock = %q, want %q", got, want)
			}
			checkWithGoSSE(t, tt.id, tt.typ, []byte(tt.data))
		})
	}
}

func TestAppendRetry(t *testing.T) {
	for _, ms := range []int64{0, 1, 9, 10, 3000, 123456789, math.MaxInt64, -1, -3000} {
		got := AppendRetry([]byte("a"), ms)
		if want := "aretry: " + strconv.FormatInt(ms, 10) + "\n"; string(got) != want {
			t.Errorf("AppendRetry(%d) = %q, want %q", ms, got, want)
		}
	}
	if string(KeepAlive) != ": keep-alive\n\n" {
		t.Errorf("KeepAlive = %q", KeepAlive)
	}
}

// normalize turns every line break of s (CRLF, CR, LF) into LF, as an SSE
// parser reads data lines.
func normalize(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// checkWithGoSSE encodes one block and parses it with go-sse, an independent
// WHATWG event-stream parser: it must yield exactly one event with the same
// id, type and data (line breaks normalised to LF).
func checkWithGoSSE(t *testing.T, id, typ string, data []byte) {
	t.Helper()
	block := AppendBlock(nil, id, typ, data)
	if !bytes.HasSuffix(block, []byte("\n\n")) {
		t.Fatalf("block %q does not end with a blank line", block)
	}
	var got []sse.Event
	for ev, err := range sse.Read(bytes.NewReader(block), &sse.ReadConfig{MaxEventSize: len(block) + 16}) {
		if err != nil {
			t.Fatalf("go-sse: %v (block %q)", err, block)
		}
		got = append(got, ev)
	}
	if len(got) != 1 {
		t.Fatalf("go-sse read %d events from %q, want 1", len(got), block)
	}
	ev := got[0]
	if ev.LastEventID != id || ev.Type != typ || ev.Data != normalize(string(data)) {
		t.Fatalf("block %q parsed as id %q type %q data %q; want %q %q %q",
			block, ev.LastEventID, ev.Type, ev.Data, id, typ, normalize(string(data)))
	}
}

// FuzzAppendBlock checks the encoder against go-sse for arbitrary data. The id
// and type are fields the server controls (cursors and validated names), so
// inputs with line breaks in them, or a NUL in the id (which WHATWG parsers
// ignore), are not blocks Sluice writes.
func FuzzAppendBlock(f *testing.F) {
	f.Add("", "", []byte(""))
	f.Add("c1", "scan.progress", []byte(`{"pct":5}`))
	f.Add("c", "a.b", []byte("1\r\n2\r3\n"))
	f.Add("", "x", []byte("\r\r\n\n\r"))
	f.Add(" sp", " t", []byte(" lead"))
	f.Add("i", "", []byte("data: x\n\nevent: y\nid: z\n"))
	f.Add("i", "", []byte("\xEF\xBB\xBFbom\n\xEF\xBB\xBF"))
	f.Fuzz(func(t *testing.T, id, typ string, data []byte) {
		if strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(typ, "\r\n") {
			t.Skip()
		}
		checkWithGoSSE(t, id, typ, data)
	})
}
