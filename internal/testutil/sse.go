package testutil

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Block is one block of an event stream as sent: its fields and comments
// up to a blank line. Data joins the block's data lines with "\n".
type Block struct {
	ID, Event, Data, Retry string
	// HasID says the block has an id field (possibly empty).
	HasID bool
	// Comments are the comment lines without their ":" (and one space).
	Comments []string
}

// KeepAlive reports whether b is only comments.
func (b Block) KeepAlive() bool {
	return b.Event == "" && b.Data == "" && b.Retry == "" && !b.HasID && len(b.Comments) > 0
}

// String formats b for test failures.
func (b Block) String() string {
	return fmt.Sprintf("{id:%q event:%q data:%q retry:%q comments:%q}", b.ID, b.Event, b.Data, b.Retry, b.Comments)
}

// BlockReader reads an event stream block by block, without interpreting
// it: no retry handling, no default event type, comments kept.
type BlockReader struct {
	br *bufio.Reader
}

// NewBlockReader returns a BlockReader of r (buffered by 64 KiB).
func NewBlockReader(r io.Reader) *BlockReader {
	return &BlockReader{br: bufio.NewReaderSize(r, 1<<16)}
}

// Next returns the next block. A block that the stream ends in the middle
// of is not returned: the error is (io.EOF at a clean end of the stream).
func (r *BlockReader) Next() (Block, error) {
	var b Block
	var data []string
	empty := true
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return Block{}, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if empty {
				continue
			}
			b.Data = strings.Join(data, "\n")
			return b, nil
		}
		empty = false
		if c, ok := strings.CutPrefix(line, ":"); ok {
			b.Comments = append(b.Comments, strings.TrimPrefix(c, " "))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			b.ID, b.HasID = value, true
		case "event":
			b.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			b.Retry = value
		}
	}
}
