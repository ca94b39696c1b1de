package client

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// DefaultMaxLine is the longest line, in bytes without its terminator, that a
// Reader accepts when none is configured.
const DefaultMaxLine = 1 << 20

// ErrLineTooLong is returned by Reader.Next when a line of the stream is longer
// than the Reader's limit. The Reader is unusable afterwards.
var ErrLineTooLong = errors.New("client: event-stream line too long")

// Event is one dispatched server-sent event.
type Event struct {
	// ID is the stream's last event ID when the event was dispatched, as an
	// EventSource reports it in lastEventId: the most recent id field seen,
	// which need not belong to this event's block.
	ID string
	// Type is the event type; "message" when the block named none.
	Type string
	// Data is the data lines of the block joined by "\n".
	Data string
}

// Reader parses a text/event-stream following the WHATWG HTML "server-sent
// events" interpretation rules: an optional leading byte order mark, CR, LF
// and CRLF line endings, comments, fields with and without a colon, one space
// after the colon removed, data lines joined by LF, id values holding NUL
// ignored, retry values of ASCII digits only, dispatch on a blank line, and
// no dispatch of a block without data. Bytes are passed through as they are:
// invalid UTF-8 is not replaced.
//
// Memory is bounded by the line limit: a line longer than it ends parsing
// with ErrLineTooLong. A Reader is not safe for concurrent use.
type Reader struct {
	r     io.Reader
	buf   []byte
	start int
	end   int
	max   int
	err   error

	begun  bool // BOM check done
	skipLF bool // previous line ended in CR: a following LF belongs to it

	data    []byte
	hasData bool
	typ     string
	idBuf   string
	lastID  string
	retry   time.Duration
	retryOK bool
}

// NewReader returns a Reader of r that refuses lines longer than maxLine
// bytes; maxLine <= 0 means DefaultMaxLine. Its buffer starts small and grows
// only as long lines require.
func NewReader(r io.Reader, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Reader{r: r, max: maxLine, buf: make([]byte, min(512, maxLine+1))}
}

// LastEventID returns the stream's last event ID: the value of the most
// recent id field of a completed block, whether or not the block was
// dispatched.
func (r *Reader) LastEventID() string { return r.lastID }

// SetLastEventID sets the initial last event ID, as an EventSource starts
// with the one it resumes from. Call it before the first Next.
func (r *Reader) SetLastEventID(id string) { r.lastID, r.idBuf = id, id }

// Retry returns the last reconnection time the stream set with a retry field,
// and whether it set one.
func (r *Reader) Retry() (time.Duration, bool) { return r.retry, r.retryOK }

// Next returns the next dispatched event. At the end of the input it returns
// io.EOF; an unterminated final block is discarded, as the standard requires.
// Any other error of the underlying reader is returned as is.
func (r *Reader) Next() (Event, error) {
	for {
		line, err := r.line()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		r.field(line)
	}
}

func (r *Reader) dispatch() (Event, bool) {
	r.lastID = r.idBuf
	if !r.hasData {
		r.typ = ""
		return Event{}, false
	}
	typ := r.typ
	if typ == "" {
		typ = "message"
	}
	ev := Event{ID: r.lastID, Type: typ, Data: string(r.data[:len(r.data)-1])}
	r.data, r.hasData, r.typ = r.data[:0], false, ""
	return ev, true
}

var (
	fieldData  = []byte("data")
	fieldEvent = []byte("event")
	fieldID    = []byte("id")
	fieldRetry = []byte("retry")
)

func (r *Reader) field(line []byte) {
	if line[0] == ':' {
		return // comment
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch {
	case bytes.Equal(name, fieldData):
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
		r.hasData = true
	case bytes.Equal(name, fieldEvent):
		r.typ = reuse(r.typ, value)
	case bytes.Equal(name, fieldID):
		if bytes.IndexByte(value, 0) < 0 {
			r.idBuf = reuse(r.idBuf, value)
		}
	case bytes.Equal(name, fieldRetry):
		if len(value) == 0 || len(value) > 18 {
			return
		}
		for _, c := range value {
			if c < '0' || c > '9' {
				return
			}
		}
		ms, _ := strconv.ParseInt(string(value), 10, 64)
		r.retry, r.retryOK = time.Duration(ms)*time.Millisecond, true
	}
}

// reuse returns old when it already holds b, sparing an allocation for the
// repeated event types of a stream.
func reuse(old string, b []byte) string {
	if old == string(b) {
		return old
	}
	return string(b)
}

// line returns the next line without its terminator. The slice is valid until
// the next call.
func (r *Reader) line() ([]byte, error) {
	if !r.begun {
		for r.end-r.start < 3 && r.err == nil {
			r.fill()
		}
		if bytes.HasPrefix(r.buf[r.start:r.end], []byte("\xEF\xBB\xBF")) {
			r.start += 3
		}
		r.begun = true
	}
	for {
		if r.skipLF && r.start < r.end {
			if r.buf[r.start] == '\n' {
				r.start++
			}
			r.skipLF = false
		}
		if !r.skipLF {
			b := r.buf[r.start:r.end]
			if i := indexEOL(b); i >= 0 {
				r.skipLF = b[i] == '\r'
				r.start += i + 1
				return b[:i], nil
			}
			if len(b) > r.max {
				r.err = ErrLineTooLong
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		r.fill()
	}
}

func indexEOL(b []byte) int {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}

// fill reads more input, compacting or growing the buffer (never beyond the
// line limit plus one byte for the terminator).
func (r *Reader) fill() {
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end == len(r.buf) {
		n := min(2*len(r.buf), r.max+1)
		if n <= len(r.buf) {
			r.err = ErrLineTooLong
			return
		}
		nb := make([]byte, n)
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	for range 100 {
		n, err := r.r.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			r.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.err = io.ErrNoProgress
}
