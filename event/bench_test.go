package event

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/channel"
)

// BenchmarkFrame measures the first encoding of an event: the cursor segment
// (one HMAC) and the SSE block, done once per event whatever the number of
// subscribers.
func BenchmarkFrame(b *testing.B) {
	c := NewCodec(testKey)
	ch := testChannel(b, "42")
	data := []byte(`{"scan":"3f1c","pct":57,"files":1234,"current":"src/main.go"}`)
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		i++
		e := &Event{Channel: ch, Type: "scan.progress", Data: data, Pos: Position{Epoch: 7, Offset: i}}
		e.Frame(c)
	}
}

// BenchmarkFrameCached is every later call: what each subscriber pays.
func BenchmarkFrameCached(b *testing.B) {
	c := NewCodec(testKey)
	e := &Event{Channel: testChannel(b, "42"), Type: "scan.progress", Data: []byte(`{"pct":57}`), Pos: Position{Epoch: 7, Offset: 1}}
	e.Frame(c)
	b.ReportAllocs()
	for b.Loop() {
		e.Frame(c)
	}
}

func benchChannels(b *testing.B, n int) ([]channel.Name, []Position) {
	chs := channels(b, n, true)
	pos := make([]Position, n)
	for i := range pos {
		pos[i] = Position{Epoch: math.MaxUint64 - uint64(i), Offset: 1 << 40}
	}
	return chs, pos
}

func BenchmarkCursorEncode(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("channels=%d", n), func(b *testing.B) {
			c := NewCodec(testKey)
			chs, pos := benchChannels(b, n)
			b.ReportAllocs()
			for b.Loop() {
				_ = c.Encode(chs, pos)
			}
		})
	}
}

func BenchmarkCursorDecode(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("channels=%d", n), func(b *testing.B) {
			c := NewCodec(testKey)
			chs, pos := benchChannels(b, n)
			cur := c.Encode(chs, pos)
			b.SetBytes(int64(len(cur)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Decode(cur, chs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendBlock(b *testing.B) {
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"small", []byte(`{"pct":57}`)},
		{"1KiB", []byte(`"` + strings.Repeat("x", 1022) + `"`)},
		{"multiline", []byte(strings.Repeat("line of text\n", 64))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendBlock(buf[:0], "cursor", "scan.progress", bc.data)
			}
		})
	}
}
