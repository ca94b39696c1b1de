package event

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/channel"
)

// A cursor (protocol.md §5) is the position of a stream in every channel of its
// subscription: one segment per channel joined by '.'. A segment is the
// unpadded base64url encoding of
//
//	version(1) | sha256(channel name)[:8] | epoch(8) | uvarint(offset) | mac(8)
//
// where mac is HMAC-SHA-256 of everything before it under the deployment's
// cursor key, truncated to 8 bytes. Every segment is thus checked, including
// those of channels a request does not name. Cursors thus
// use only [A-Za-z0-9_.-], are safe in a URL query unescaped, and one this
// deployment did not issue, or one altered, does not decode.
//
// Because each segment stands alone, a stream on several channels builds the
// id of an event by joining cached segments: the expensive part (the MAC) is
// computed once per event, not once per subscriber.

// MaxCursorLen is the longest cursor Sluice reads or writes (protocol.md §5).
const MaxCursorLen = 1024

const (
	cursorVersion = 1
	macLen        = 8
	segMinRaw     = 1 + 8 + 8 + 1 + macLen
	segMaxRaw     = 1 + 8 + 8 + binary.MaxVarintLen64 + macLen
)

// Cursor decoding errors. Any of them means the cursor cannot be read: the
// stream goes on from the head after a stream-reset.
var (
	ErrCursorSyntax = errors.New("event: cursor is not well formed")
	ErrCursorCheck  = errors.New("event: cursor check failed")
)

// Codec encodes and decodes cursors under the deployment's cursor key. It is
// safe for concurrent use.
//
// The key can change while the process runs (Adopt): after a Redis that lost
// its data, instances agree on a new key. Cursors are then written under the
// new key, and cursors under the previous ones (up to maxOldKeys) are still
// read, so that streams open across the change resume anywhere.
type Codec struct {
	ring atomic.Pointer[keyring]
	mu   sync.Mutex // serialises Adopt
}

// maxOldKeys bounds how many earlier keys a Codec still reads.
const maxOldKeys = 3

type keyring struct {
	cur *macKey
	old []*macKey
}

// macKey is one key with a pool of its HMAC states.
type macKey struct {
	key  []byte
	macs sync.Pool // of *macState
}

// macState is an HMAC state with room for its input and output, so that
// neither goes to the heap through the hash.Hash interface.
type macState struct {
	h   hash.Hash
	in  [segMaxRaw]byte
	sum [sha256.Size]byte
}

func newMACKey(key []byte) *macKey {
	k := &macKey{key: append([]byte(nil), key...)}
	k.macs.New = func() any { return &macState{h: hmac.New(sha256.New, k.key)} }
	return k
}

// NewCodec returns a Codec for key. Every instance of a deployment must use the
// same key, so that a cursor minted by one resumes on another.
func NewCodec(key []byte) *Codec {
	c := &Codec{}
	c.ring.Store(&keyring{cur: newMACKey(key)})
	return c
}

// Adopt makes key the one cursors are written under, keeping the current key
// (and up to maxOldKeys earlier ones) for reading. It reports whether the
// key changed.
func (c *Codec) Adopt(key []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.ring.Load()
	if hmac.Equal(r.cur.key, key) {
		return false
	}
	old := []*macKey{r.cur}
	for _, k := range r.old {
		if len(old) < maxOldKeys && !hmac.Equal(k.key, key) {
			old = append(old, k)
		}
	}
	c.ring.Store(&keyring{cur: newMACKey(key), old: old})
	return true
}

// Segment encodes the position of one channel.
func (c *Codec) Segment(ch channel.Name, p Position) string {
	var raw [segMaxRaw]byte
	var enc [(segMaxRaw*8 + 5) / 6]byte // base64.RawURLEncoding.EncodedLen(segMaxRaw)
	n := c.putSegment(raw[:], ch, p)
	m := base64.RawURLEncoding.EncodedLen(n)
	base64.RawURLEncoding.Encode(enc[:m], raw[:n])
	return string(enc[:m])
}

func (c *Codec) putSegment(raw []byte, ch channel.Name, p Position) int {
	raw[0] = cursorVersion
	binary.BigEndian.PutUint64(raw[1:], nameHash(ch.String()))
	binary.BigEndian.PutUint64(raw[9:], p.Epoch)
	n := 17 + binary.PutUvarint(raw[17:], p.Offset)
	c.ring.Load().cur.mac(raw[n:n:n+macLen], raw[:n])
	return n + macLen
}

// check reports whether mac is body's MAC under the current key or an
// earlier one still read.
func (c *Codec) check(body, mac []byte) bool {
	r := c.ring.Load()
	var sum [macLen]byte
	if hmac.Equal(r.cur.mac(sum[:0], body), mac) {
		return true
	}
	for _, k := range r.old {
		if hmac.Equal(k.mac(sum[:0], body), mac) {
			return true
		}
	}
	return false
}

// mac appends the truncated MAC of body (at most segMaxRaw bytes) to dst.
func (k *macKey) mac(dst []byte, body []byte) []byte {
	st := k.macs.Get().(*macState)
	st.h.Reset()
	st.h.Write(st.in[:copy(st.in[:], body)])
	dst = append(dst, st.h.Sum(st.sum[:0])[:macLen]...)
	k.macs.Put(st)
	return dst
}

// Encode returns the cursor naming position pos[i] for channel chs[i].
func (c *Codec) Encode(chs []channel.Name, pos []Position) string {
	var b strings.Builder
	for i, ch := range chs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(c.Segment(ch, pos[i]))
	}
	return b.String()
}

// Decode reads cursor for a subscription to chs. For each channel it reports
// the position the cursor names and whether the cursor names it at all;
// segments of channels not in chs are ignored (protocol.md §5). An error means the
// cursor as a whole is unreadable.
func (c *Codec) Decode(cursor string, chs []channel.Name) (pos []Position, named []bool, err error) {
	if len(cursor) == 0 || len(cursor) > MaxCursorLen {
		return nil, nil, ErrCursorSyntax
	}
	pos = make([]Position, len(chs))
	named = make([]bool, len(chs))
	hashes := make([]uint64, len(chs))
	for i, ch := range chs {
		hashes[i] = nameHash(ch.String())
	}
	var raw [segMaxRaw]byte
	for s := range strings.SplitSeq(cursor, ".") {
		if len(s) < base64.RawURLEncoding.EncodedLen(segMinRaw) || len(s) > base64.RawURLEncoding.EncodedLen(segMaxRaw) ||
			strings.ContainsAny(s, "\r\n") { // the decoder would skip them
			return nil, nil, ErrCursorSyntax
		}
		n, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(s))
		if err != nil || raw[0] != cursorVersion {
			return nil, nil, ErrCursorSyntax
		}
		off, vn := binary.Uvarint(raw[17 : n-macLen])
		if vn <= 0 || 17+vn != n-macLen {
			return nil, nil, ErrCursorSyntax
		}
		if !c.check(raw[:n-macLen], raw[n-macLen:n]) {
			return nil, nil, ErrCursorCheck
		}
		h := binary.BigEndian.Uint64(raw[1:])
		for i := range chs {
			if hashes[i] == h && !named[i] {
				named[i] = true
				pos[i] = Position{Epoch: binary.BigEndian.Uint64(raw[9:]), Offset: off}
			}
		}
	}
	return pos, named, nil
}

func nameHash(s string) uint64 {
	var buf [channel.MaxLen]byte // a channel name is copied here, not to the heap
	b := buf[:0]
	if len(s) > len(buf) {
		b = make([]byte, 0, len(s))
	}
	sum := sha256.Sum256(append(b, s...))
	return binary.BigEndian.Uint64(sum[:8])
}
