package event

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/channel"
)

var testKey = []byte("cursor test key")

// channels returns n distinct channel names; long makes every resource 128
// characters.
func channels(t testing.TB, n int, long bool) []channel.Name {
	t.Helper()
	chs := make([]channel.Name, n)
	for i := range chs {
		r := fmt.Sprintf("res-%d", i)
		if long {
			r = fmt.Sprintf("%0128d", i)
		}
		chs[i] = testChannel(t, r)
	}
	return chs
}

// positions returns n positions drawn from r, including the extremes.
func positions(r *rand.Rand, n int) []Position {
	pos := make([]Position, n)
	for i := range pos {
		switch i % 4 {
		case 0:
			pos[i] = Position{Epoch: r.Uint64(), Offset: r.Uint64()}
		case 1:
			pos[i] = Position{Epoch: r.Uint64(), Offset: uint64(r.IntN(200))}
		case 2:
			pos[i] = Position{Epoch: math.MaxUint64, Offset: math.MaxUint64}
		case 3:
			pos[i] = Position{}
		}
	}
	return pos
}

// cursorChars reports whether every byte of s is in [A-Za-z0-9._~-].
func cursorChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

func TestCursorRoundTrip(t *testing.T) {
	c := NewCodec(testKey)
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 16; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			chs := channels(t, n, n%2 == 0)
			pos := positions(r, n)
			cur := c.Encode(chs, pos)
			if !cursorChars(cur) {
				t.Errorf("cursor %q has characters outside [A-Za-z0-9._~-]", cur)
			}
			if len(cur) > MaxCursorLen {
				t.Errorf("cursor is %d bytes, more than %d", len(cur), MaxCursorLen)
			}
			if got := strings.Count(cur, ".") + 1; got != n {
				t.Errorf("cursor has %d segments, want %d", got, n)
			}
			got, named, err := c.Decode(cur, chs)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !slices.Equal(got, pos) {
				t.Errorf("Decode = %v, want %v", got, pos)
			}
			if slices.Contains(named, false) {
				t.Errorf("named = %v, want all true", named)
			}

			// Order of the subscription does not matter.
			rev := slices.Clone(chs)
			slices.Reverse(rev)
			got, named, err = c.Decode(cur, rev)
			wantRev := slices.Clone(pos)
			slices.Reverse(wantRev)
			if err != nil || !slices.Equal(got, wantRev) || slices.Contains(named, false) {
				t.Errorf("Decode(reversed) = %v, %v, %v; want %v", got, named, err, wantRev)
			}

			// Another codec with the same key reads it: every instance of a
			// deployment shares the key.
			if got, _, err := NewCodec(testKey).Decode(cur, chs); err != nil || !slices.Equal(got, pos) {
				t.Errorf("Decode with a second codec = %v, %v", got, err)
			}
		})
	}
}

func TestCursorSegmentsJoin(t *testing.T) {
	c := NewCodec(testKey)
	chs := channels(t, 3, false)
	pos := []Position{{1, 2}, {3, 4}, {5, 6}}
	var segs []string
	for i := range chs {
		seg := c.Segment(chs[i], pos[i])
		if strings.Contains(seg, ".") {
			t.Fatalf("segment %q contains '.'", seg)
		}
		segs = append(segs, seg)
	}
	if got, want := c.Encode(chs, pos), strings.Join(segs, "."); got != want {
		t.Errorf("Encode = %q, want the joined segments %q", got, want)
	}
	// Encoding is deterministic.
	if c.Segment(chs[0], pos[0]) != segs[0] {
		t.Error("Segment is not deterministic")
	}
	// Every field changes the segment.
	for _, other := range []string{
		c.Segment(chs[1], pos[0]),
		c.Segment(chs[0], Position{pos[0].Epoch + 1, pos[0].Offset}),
		c.Segment(chs[0], Position{pos[0].Epoch, pos[0].Offset + 1}),
		NewCodec([]byte("other")).Segment(chs[0], pos[0]),
	} {
		if other == segs[0] {
			t.Errorf("segment %q does not depend on every input", other)
		}
	}
}

func TestCursorSubsetSuperset(t *testing.T) {
	c := NewCodec(testKey)
	all := channels(t, 6, false)
	pos := []Position{{1, 10}, {2, 20}, {3, 30}, {4, 40}, {5, 50}, {6, 60}}
	cur := c.Encode(all[:4], pos[:4])

	// Subset: segments for channels not requested are ignored.
	got, named, err := c.Decode(cur, []channel.Name{all[2], all[0]})
	if err != nil || !slices.Equal(got, []Position{pos[2], pos[0]}) || !slices.Equal(named, []bool{true, true}) {
		t.Errorf("subset: %v, %v, %v", got, named, err)
	}

	// Superset: channels the cursor does not name report named=false and the
	// zero position.
	got, named, err = c.Decode(cur, all)
	if err != nil {
		t.Fatalf("superset: %v", err)
	}
	if want := []bool{true, true, true, true, false, false}; !slices.Equal(named, want) {
		t.Errorf("superset named = %v, want %v", named, want)
	}
	if want := append(slices.Clone(pos[:4]), Position{}, Position{}); !slices.Equal(got, want) {
		t.Errorf("superset positions = %v, want %v", got, want)
	}

	// Disjoint: a readable cursor that names none of the channels.
	got, named, err = c.Decode(cur, all[4:])
	if err != nil || slices.Contains(named, true) || !slices.Equal(got, []Position{{}, {}}) {
		t.Errorf("disjoint: %v, %v, %v", got, named, err)
	}

	// No channels at all.
	got, named, err = c.Decode(cur, nil)
	if err != nil || len(got) != 0 || len(named) != 0 {
		t.Errorf("no channels: %v, %v, %v", got, named, err)
	}

	// The same channel twice in the subscription.
	got, named, err = c.Decode(cur, []channel.Name{all[1], all[1]})
	if err != nil || !slices.Equal(got, []Position{pos[1], pos[1]}) || !slices.Equal(named, []bool{true, true}) {
		t.Errorf("duplicate channel: %v, %v, %v", got, named, err)
	}

	// The same channel twice in the cursor: the first segment wins.
	dup := c.Encode([]channel.Name{all[0], all[0]}, []Position{{1, 1}, {2, 2}})
	got, _, err = c.Decode(dup, all[:1])
	if err != nil || got[0] != (Position{1, 1}) {
		t.Errorf("duplicate segment: %v, %v", got, err)
	}
}

func TestCursorAltered(t *testing.T) {
	c := NewCodec(testKey)
	chs := channels(t, 2, false)
	cur := c.Encode(chs, []Position{{Epoch: 9, Offset: 300}, {Epoch: 1 << 40, Offset: 1}})

	// Every byte replaced by every other byte value.
	for i := range len(cur) {
		for v := range 256 {
			if byte(v) == cur[i] {
				continue
			}
			alt := cur[:i] + string([]byte{byte(v)}) + cur[i+1:]
			if pos, _, err := c.Decode(alt, chs); err == nil {
				t.Fatalf("altered byte %d to %q: decoded %v", i, byte(v), pos)
			}
		}
	}

	// Every byte removed, and a byte inserted everywhere.
	for i := range len(cur) {
		alt := cur[:i] + cur[i+1:]
		if pos, _, err := c.Decode(alt, chs); err == nil {
			t.Errorf("removed byte %d: decoded %v", i, pos)
		}
		for _, ins := range []string{"A", "_", ".", "\n", "\r", "\r\n", "="} {
			alt := cur[:i] + ins + cur[i:]
			if pos, _, err := c.Decode(alt, chs); err == nil {
				t.Errorf("inserted %q at %d: decoded %v", ins, i, pos)
			}
		}
	}

	// Truncation is an error except at a segment boundary, where what is
	// left is a shorter valid cursor.
	first, _, _ := strings.Cut(cur, ".")
	for n := 1; n < len(cur); n++ {
		_, named, err := c.Decode(cur[:n], chs)
		if n == len(first) {
			if err != nil || !slices.Equal(named, []bool{true, false}) {
				t.Errorf("first segment alone: %v, %v", named, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("truncated to %d bytes: decoded", n)
		}
	}

	// Bit flips in a 16-channel cursor.
	chs = channels(t, 16, true)
	cur = c.Encode(chs, positions(rand.New(rand.NewPCG(3, 4)), 16))
	for i := range len(cur) {
		for bit := range 8 {
			alt := []byte(cur)
			alt[i] ^= 1 << bit
			if _, _, err := c.Decode(string(alt), chs); err == nil {
				t.Fatalf("flipped bit %d of byte %d: decoded", bit, i)
			}
		}
	}
}

func TestCursorOtherKey(t *testing.T) {
	chs := channels(t, 3, false)
	pos := []Position{{1, 1}, {2, 2}, {3, 3}}
	cur := NewCodec([]byte("deployment A")).Encode(chs, pos)
	for _, key := range [][]byte{[]byte("deployment B"), nil, []byte("deployment A ")} {
		_, _, err := NewCodec(key).Decode(cur, chs)
		if !errors.Is(err, ErrCursorCheck) {
			t.Errorf("key %q: err = %v, want ErrCursorCheck", key, err)
		}
	}
	// One foreign segment among good ones spoils the whole cursor, even
	// for a channel the request does not name.
	c := NewCodec([]byte("deployment B"))
	mixed := c.Encode(chs[:2], pos[:2]) + "." + NewCodec([]byte("deployment A")).Segment(chs[2], pos[2])
	if _, _, err := c.Decode(mixed, chs[:2]); !errors.Is(err, ErrCursorCheck) {
		t.Errorf("mixed keys: err = %v, want ErrCursorCheck", err)
	}
	// NewCodec copies the key: changing the caller's slice changes nothing.
	key := []byte("deployment A")
	c = NewCodec(key)
	key[0] = 'X'
	if _, _, err := c.Decode(cur, chs); err != nil {
		t.Errorf("codec affected by a change to the key slice: %v", err)
	}
}

func TestCursorSyntax(t *testing.T) {
	c := NewCodec(testKey)
	chs := channels(t, 1, false)
	good := c.Segment(chs[0], Position{Epoch: 1, Offset: math.MaxUint64})

	// 22 valid segments are 1055 bytes: over the limit although every
	// segment would decode.
	var many []string
	for range 22 {
		many = append(many, good)
	}
	tooLong := strings.Join(many, ".")
	if len(tooLong) <= MaxCursorLen {
		t.Fatalf("test cursor is only %d bytes", len(tooLong))
	}
	// And the longest cursor that still fits reads.
	fits := strings.Join(many[:len(many)-1], ".")
	if len(fits) > MaxCursorLen {
		t.Fatalf("test cursor is %d bytes", len(fits))
	}
	if _, named, err := c.Decode(fits, chs); err != nil || !named[0] {
		t.Errorf("%d-byte cursor: %v, %v", len(fits), named, err)
	}

	for name, in := range map[string]string{
		"empty":           "",
		"1025 bytes":      strings.Repeat("A", MaxCursorLen+1),
		"too long, valid": tooLong,
		"dot":             ".",
		"leading dot":     "." + good,
		"trailing dot":    good + ".",
		"double dot":      good + ".." + good,
		"short segment":   good[:10],
		"long segment":    good + good,
		"padding":         good + "=",
		"std alphabet":    strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/",
		"space":           good[:5] + " " + good[6:],
		"tilde":           good[:5] + "~" + good[6:],
		"all A, 35 bytes": strings.Repeat("A", 35),
		"all A, 47 bytes": strings.Repeat("A", 47),
		"non-ASCII":       "é" + good[2:],
	} {
		pos, named, err := c.Decode(in, chs)
		if err == nil {
			t.Errorf("%s: Decode(%q) = %v, %v", name, in, pos, named)
		}
		if !errors.Is(err, ErrCursorSyntax) && !errors.Is(err, ErrCursorCheck) {
			t.Errorf("%s: err = %v, want ErrCursorSyntax or ErrCursorCheck", name, err)
		}
		if pos != nil || named != nil {
			t.Errorf("%s: Decode returned positions with an error", name)
		}
	}
	// A segment with a valid check but another version, or with bytes after
	// the offset, is not read.
	for name, raw := range map[string][]byte{
		"version 2":       {2, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, 5},
		"bytes after":     {cursorVersion, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0},
		"unended varint":  {cursorVersion, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0x80},
		"overlong varint": append([]byte{cursorVersion, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
	} {
		seg := base64.RawURLEncoding.EncodeToString(c.ring.Load().cur.mac(raw, raw))
		if _, _, err := c.Decode(seg, chs); !errors.Is(err, ErrCursorSyntax) {
			t.Errorf("%s: err = %v, want ErrCursorSyntax", name, err)
		}
	}

	for _, in := range []string{"", strings.Repeat("A", MaxCursorLen+1), tooLong} {
		if _, _, err := c.Decode(in, chs); !errors.Is(err, ErrCursorSyntax) {
			t.Errorf("Decode(%d bytes) = %v, want ErrCursorSyntax", len(in), err)
		}
	}
}

// maxStreamChannels is the most channels a stream may have
// (SLUICE_MAX_CHANNELS at most 21, protocol.md §10; server.MaxChannelsLimit).
const maxStreamChannels = 21

// TestCursorWorstCase computes the longest cursor Sluice writes for the most
// channels a stream may have: the longest names and the largest epochs and
// offsets. It must stay within protocol.md §5's 1024 bytes, and one channel
// more must not, so that the limit is as high as the cursor allows.
func TestCursorWorstCase(t *testing.T) {
	c := NewCodec(testKey)
	chs := make([]channel.Name, maxStreamChannels+1)
	pos := make([]Position, maxStreamChannels+1)
	for i := range chs {
		chs[i] = channel.MustMake(strings.Repeat("p", 63), testTenant, fmt.Sprintf("%0128d", i))
		if len(chs[i].String()) != channel.MaxLen {
			t.Fatalf("name is %d bytes, want %d", len(chs[i].String()), channel.MaxLen)
		}
		pos[i] = Position{Epoch: math.MaxUint64, Offset: math.MaxUint64}
	}
	if over := c.Encode(chs, pos); len(over) <= MaxCursorLen {
		t.Errorf("%d channels give a %d-byte cursor: the channel limit could be higher", len(chs), len(over))
	}
	chs, pos = chs[:maxStreamChannels], pos[:maxStreamChannels]
	cur := c.Encode(chs, pos)
	// A segment is 1+8+8+10+8 = 35 bytes, 47 in base64; 21 of them and 20 dots.
	if want := maxStreamChannels*47 + maxStreamChannels - 1; len(cur) != want {
		t.Errorf("worst-case cursor is %d bytes, want %d", len(cur), want)
	}
	if len(cur) > MaxCursorLen || !cursorChars(cur) {
		t.Errorf("worst-case cursor: %d bytes, valid characters %v", len(cur), cursorChars(cur))
	}
	if got, _, err := c.Decode(cur, chs); err != nil || !slices.Equal(got, pos) {
		t.Errorf("Decode(worst case) = %v, %v", got, err)
	}
	// The shortest segment: offset below 128.
	if n := len(c.Segment(chs[0], Position{})); n != 35 {
		t.Errorf("shortest segment is %d bytes, want 35", n)
	}
}

// FuzzDecode checks that Decode never panics, and that whatever it accepts is
// made of segments this codec writes: re-encoding each decoded position gives
// a segment of the input.
func FuzzDecode(f *testing.F) {
	c := NewCodec(testKey)
	chs := channels(f, 4, false)
	r := rand.New(rand.NewPCG(5, 6))
	for n := 1; n <= 4; n++ {
		f.Add(c.Encode(chs[:n], positions(r, n)))
	}
	f.Add(c.Encode(chs[2:], []Position{{1, 1}, {2, 2}}))
	f.Add(NewCodec([]byte("other")).Encode(chs[:1], []Position{{1, 1}}))
	f.Add("")
	f.Add(".")
	f.Add(strings.Repeat("A", 47))
	f.Fuzz(func(t *testing.T, in string) {
		pos, named, err := c.Decode(in, chs)
		if err != nil {
			if pos != nil || named != nil {
				t.Fatalf("Decode(%q) returned positions with error %v", in, err)
			}
			if !errors.Is(err, ErrCursorSyntax) && !errors.Is(err, ErrCursorCheck) {
				t.Fatalf("Decode(%q): unexpected error %v", in, err)
			}
			return
		}
		if len(pos) != len(chs) || len(named) != len(chs) {
			t.Fatalf("Decode(%q): %d positions, %d named for %d channels", in, len(pos), len(named), len(chs))
		}
		if len(in) > MaxCursorLen || !cursorChars(in) {
			t.Fatalf("Decode accepted %q", in)
		}
		segs := strings.Split(in, ".")
		for i, ch := range chs {
			if !named[i] {
				if pos[i] != (Position{}) {
					t.Fatalf("Decode(%q): unnamed channel %d has position %v", in, i, pos[i])
				}
				continue
			}
			if seg := c.Segment(ch, pos[i]); !slices.Contains(segs, seg) {
				t.Fatalf("Decode(%q): channel %d at %v, whose segment %q is not in the input", in, i, pos[i], seg)
			}
		}
	})
}

// TestCodecAdopt: after Adopt, cursors are written under the new key and
// those written under the earlier keys (up to maxOldKeys) still read; a
// cursor of a key never adopted does not.
func TestCodecAdopt(t *testing.T) {
	ch := channel.MustMake("scan", "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91", "1")
	chs := []channel.Name{ch}
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	c := NewCodec(key(1))
	stranger := NewCodec(key(9)).Encode(chs, []Position{{Epoch: 7, Offset: 3}})
	var minted []string
	for k := byte(1); k <= 5; k++ {
		if k > 1 && !c.Adopt(key(k)) {
			t.Fatalf("Adopt(key %d) reported no change", k)
		}
		if c.Adopt(key(k)) {
			t.Fatalf("Adopt(key %d) twice reported a change", k)
		}
		minted = append(minted, c.Encode(chs, []Position{{Epoch: 7, Offset: uint64(k)}}))
	}
	if minted[4] != NewCodec(key(5)).Encode(chs, []Position{{Epoch: 7, Offset: 5}}) {
		t.Error("after Adopt, cursors are not written under the new key")
	}
	for i, cur := range minted {
		pos, named, err := c.Decode(cur, chs)
		readable := i >= 4-maxOldKeys // the current key and maxOldKeys earlier ones
		switch {
		case readable && (err != nil || !named[0] || pos[0].Offset != uint64(i+1)):
			t.Errorf("cursor under key %d: %v %v %v, want offset %d", i+1, pos, named, err, i+1)
		case !readable && !errors.Is(err, ErrCursorCheck):
			t.Errorf("cursor under key %d (too old): err = %v, want ErrCursorCheck", i+1, err)
		}
	}
	if _, _, err := c.Decode(stranger, chs); !errors.Is(err, ErrCursorCheck) {
		t.Errorf("cursor of a key never adopted: err = %v, want ErrCursorCheck", err)
	}
}
