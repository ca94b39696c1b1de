// Package event holds Sluice's event types, the event-name rules of protocol.md §7,
// the cursor codec of protocol.md §5 and the SSE frame encoder of protocol.md §4.
//
// An Event is encoded once, when the first stream needs it, and the bytes are
// shared by every subscriber of its channel.
package event

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/channel"
)

// Position is a place in one channel's history: the offset of an event within
// an epoch. An epoch names one unbroken history of a channel; when history is
// lost (process restart, broker flush, expiry of an idle channel) the channel
// gets a new epoch and positions of the old one can no longer be resumed.
// Offsets start at 1; offset 0 is "before the first event".
type Position struct {
	Epoch  uint64
	Offset uint64
}

// String returns the position as published in a POST /publish reply: opaque
// to clients, "<epoch base36>-<offset>".
func (p Position) String() string {
	var b [2*20 + 1]byte
	return string(p.Append(b[:0]))
}

// Append appends the position as String writes it to b.
func (p Position) Append(b []byte) []byte {
	b = strconv.AppendUint(b, p.Epoch, 36)
	b = append(b, '-')
	return strconv.AppendUint(b, p.Offset, 10)
}

// Message is what a publisher hands to a broker: a validated event without a
// position yet.
type Message struct {
	Channel channel.Name
	Type    string // resource.verb (ValidType)
	Data    []byte // compact JSON
}

// Event is a published message with its position. Events are immutable once
// published and shared between goroutines; only the lazily computed encoding
// inside is written, once, under a sync.Once.
type Event struct {
	Channel channel.Name
	Type    string
	Data    []byte
	Pos     Position
	// Published is when the event was accepted, in Unix nanoseconds, used for
	// the publish→write latency histogram.
	Published int64
	// Lost marks not an event but a broker's notice that Channel's events up
	// to Pos could not be delivered and history no longer holds them (Redis
	// restarted empty, a flush, an expired key): Type and Data are empty, and
	// Pos is where the channel goes on (offset 0 of a new epoch, or {0, 0}
	// when the channel has no history at all). A stream not already at Pos
	// tells its client with stream-reset and continues from Pos. Made with
	// NewLost.
	Lost bool

	once  sync.Once
	seg   string // cursor segment for (Channel, Pos)
	body  []byte // "event: …\ndata: …\n\n"
	frame []byte // "id: <seg>\n" + body
}

// NewLost returns the notice that ch's events up to at are lost (Event.Lost).
func NewLost(ch channel.Name, at Position) *Event {
	return &Event{Channel: ch, Pos: at, Lost: true}
}

// Frame returns the event's complete SSE block for a subscription to its
// channel alone, and its pieces for subscriptions to several channels: the
// cursor segment of its position and the block without the id line. All are
// computed once per event; callers must not modify them.
func (e *Event) Frame(c *Codec) (frame []byte, seg string, body []byte) {
	e.once.Do(func() {
		// One buffer holds the frame; the body is its tail. It is sized
		// for data of one line (compact JSON), and grows for more.
		e.seg = c.Segment(e.Channel, e.Pos)
		id := len("id: \n") + len(e.seg)
		f := make([]byte, 0, id+len("event: \n")+len(e.Type)+len("data: \n\n")+len(e.Data))
		f = append(append(append(f, "id: "...), e.seg...), '\n')
		e.frame = AppendBlock(f, "", e.Type, e.Data)
		e.body = e.frame[id:len(e.frame):len(e.frame)]
	})
	return e.frame, e.seg, e.body
}

// Reserved is the prefix of event names only the server emits.
const Reserved = "stream-"

// Event types the server emits (protocol.md §4–§6).
const (
	TypeOpen  = "stream-open"
	TypeReset = "stream-reset"
	TypeError = "stream-error"
)

// Errors of ValidType.
var (
	ErrTypeSyntax   = errors.New("event: name must match ^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$ (resource.verb)")
	ErrTypeReserved = errors.New("event: names starting with \"stream-\" are reserved for the server")
)

// MaxTypeLen bounds an event name.
const MaxTypeLen = 256

// ValidType reports whether t is a publishable event name (protocol.md §7).
func ValidType(t string) error {
	if strings.HasPrefix(t, Reserved) {
		return ErrTypeReserved
	}
	if len(t) == 0 || len(t) > MaxTypeLen {
		return ErrTypeSyntax
	}
	dots := 0
	start := true // at the first character of a part
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '.':
			if start {
				return ErrTypeSyntax
			}
			dots++
			start = true
		case c >= 'a' && c <= 'z':
			start = false
		case c >= '0' && c <= '9' || c == '_':
			if start {
				return ErrTypeSyntax
			}
		default:
			return ErrTypeSyntax
		}
	}
	if start || dots == 0 {
		return ErrTypeSyntax
	}
	return nil
}
