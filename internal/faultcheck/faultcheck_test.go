package faultcheck

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// synthetic builds a Log. pubs maps a channel to one letter per publish, in
// sequence order: A acked, U unknown, F failed; publish i (over all
// channels, in the order of chans) is sent at logical time 100+i. Each
// subscriber is "<channels>|<items>" with items separated by spaces:
//
//	O    stream-open (at time 1, or at the time given as O@t)
//	E    end of a connection
//	R    stream-reset of every channel; Rb a reset of channel b
//	a3   event of channel a with sequence number 3
func synthetic(t *testing.T, chans string, pubs map[string]string, subs ...string) Log {
	t.Helper()
	var l Log
	at := uint64(100)
	for _, ch := range strings.Split(chans, ",") {
		for i, o := range pubs[ch] {
			at++
			p := Publish{Channel: ch, Seq: i + 1, At: at}
			switch o {
			case 'A':
				p.Outcome = Acked
			case 'U':
				p.Outcome = Unknown
			case 'F':
				p.Outcome = Failed
			default:
				t.Fatalf("outcome %q", o)
			}
			l.Publishes = append(l.Publishes, p)
		}
	}
	for i, s := range subs {
		chs, items, _ := strings.Cut(s, "|")
		sub := Subscriber{Name: fmt.Sprintf("sub%d", i), Channels: strings.Split(chs, ",")}
		for _, tok := range strings.Fields(items) {
			var it Item
			switch {
			case tok == "O":
				it = Item{Kind: Open, At: 1}
			case strings.HasPrefix(tok, "O@"):
				n, err := strconv.Atoi(tok[2:])
				if err != nil {
					t.Fatal(err)
				}
				it = Item{Kind: Open, At: uint64(n)}
			case tok == "E":
				it = Item{Kind: End}
			case tok[0] == 'R':
				it = Item{Kind: Reset, Channel: tok[1:]}
			default:
				n, err := strconv.Atoi(tok[1:])
				if err != nil {
					t.Fatalf("item %q", tok)
				}
				it = Item{Kind: Event, Channel: tok[:1], Seq: n}
			}
			sub.Items = append(sub.Items, it)
		}
		l.Subscribers = append(l.Subscribers, sub)
	}
	return l
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		chans string
		pubs  map[string]string
		subs  []string
		want  Report // Examples ignored
	}{
		{
			name: "everything in order", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O a1 a2 a3 a4", "a|O a1 a2 a3 a4"},
			want: Report{Delivered: 8},
		},
		{
			name: "one lost", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O a1 a3 a4"},
			want: Report{Delivered: 3, SilentLoss: 1},
		},
		{
			name: "the last lost", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O a1 a2 a3"},
			want: Report{Delivered: 3, SilentLoss: 1},
		},
		{
			name: "lost across a reconnection without a reset", chans: "a", pubs: map[string]string{"a": "AAAAA"},
			subs: []string{"a|O a1 a2 E O a4 a5"},
			want: Report{Delivered: 4, SilentLoss: 1, Reconnects: 1},
		},
		{
			name: "duplicate", chans: "a", pubs: map[string]string{"a": "AAA"},
			subs: []string{"a|O a1 a2 a2 a3"},
			want: Report{Delivered: 3, Duplicates: 1},
		},
		{
			name: "replayed twice after a reconnection", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O a1 a2 a3 E O a2 a3 a4"},
			want: Report{Delivered: 4, Duplicates: 2, Reconnects: 1},
		},
		{
			name: "swapped", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O a1 a3 a2 a4"},
			want: Report{Delivered: 4, Reorders: 1},
		},
		{
			name: "channels interleave freely", chans: "a,b", pubs: map[string]string{"a": "AAA", "b": "AAA"},
			subs: []string{"a,b|O b1 a1 b2 b3 a2 a3"},
			want: Report{Delivered: 6},
		},
		{
			name: "reset after a reconnection covers the gap", chans: "a", pubs: map[string]string{"a": "AAAAAA"},
			subs: []string{"a|O a1 a2 E O R a5 a6"},
			want: Report{Delivered: 4, Resets: 1, Covered: 2, Reconnects: 1},
		},
		{
			name: "mid-stream reset of the channel covers the gap", chans: "a", pubs: map[string]string{"a": "AAAAA"},
			subs: []string{"a|O a1 a2 Ra a5"},
			want: Report{Delivered: 3, Resets: 1, Covered: 2},
		},
		{
			name: "reset of another channel covers nothing here", chans: "a,b", pubs: map[string]string{"a": "AAA", "b": "AAA"},
			subs: []string{"a,b|O a1 b1 Rb a3 b3"},
			want: Report{Delivered: 4, Resets: 1, Covered: 1, SilentLoss: 1},
		},
		{
			name: "reset of the stream covers every channel", chans: "a,b", pubs: map[string]string{"a": "AAA", "b": "AAA"},
			subs: []string{"a,b|O a1 b1 R a3 b3"},
			want: Report{Delivered: 4, Resets: 1, Covered: 2},
		},
		{
			name: "reset with nothing after it covers the rest", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O a1 a2 R"},
			want: Report{Delivered: 2, Resets: 1, Covered: 2},
		},
		{
			name: "reset before any event covers the start", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O R a3 a4"},
			want: Report{Delivered: 2, Resets: 1, Covered: 2},
		},
		{
			name: "a reset covers only its own gap", chans: "a", pubs: map[string]string{"a": "AAAAAAA"},
			subs: []string{"a|O a1 R a3 a4 a6 a7"},
			want: Report{Delivered: 5, Resets: 1, Covered: 1, SilentLoss: 1},
		},
		{
			name: "unknown outcome may be missing", chans: "a", pubs: map[string]string{"a": "AUAUA"},
			subs: []string{"a|O a1 a2 a3 a5"},
			want: Report{Delivered: 4, UnknownMissed: 1},
		},
		{
			name: "unknown outcome must not be duplicated", chans: "a", pubs: map[string]string{"a": "AUA"},
			subs: []string{"a|O a1 a2 a2 a3"},
			want: Report{Delivered: 3, Duplicates: 1},
		},
		{
			name: "unknown outcome must not be reordered", chans: "a", pubs: map[string]string{"a": "AUA"},
			subs: []string{"a|O a1 a3 a2"},
			want: Report{Delivered: 3, Reorders: 1},
		},
		{
			name: "refused publish delivered", chans: "a", pubs: map[string]string{"a": "AFA"},
			subs: []string{"a|O a1 a2 a3"},
			want: Report{Delivered: 2, Phantoms: 1},
		},
		{
			name: "refused publish missing", chans: "a", pubs: map[string]string{"a": "AFA"},
			subs: []string{"a|O a1 a3"},
			want: Report{Delivered: 2},
		},
		{
			name: "never published", chans: "a", pubs: map[string]string{"a": "AA"},
			subs: []string{"a|O a1 a2 a7"},
			want: Report{Delivered: 2, Phantoms: 1},
		},
		{
			name: "event of a channel not asked for", chans: "a,b", pubs: map[string]string{"a": "AA", "b": "A"},
			subs: []string{"a|O a1 b1 a2"},
			want: Report{Delivered: 2, Phantoms: 1},
		},
		{
			// Publishes are sent at 101…106: those up to the open (103)
			// are outside the window.
			name: "window starts at the first open", chans: "a", pubs: map[string]string{"a": "AAAAAA"},
			subs: []string{"a|O@103 a4 a5 a6", "a|O@103 a3 a4 a5 a6"},
			want: Report{Delivered: 7},
		},
		{
			name: "later opens do not move the window", chans: "a", pubs: map[string]string{"a": "AAAA"},
			subs: []string{"a|O a1 E O@103 a4"},
			want: Report{Delivered: 2, SilentLoss: 2, Reconnects: 1},
		},
		{
			name: "never opened", chans: "a", pubs: map[string]string{"a": "AAA"},
			subs: []string{"a|"},
			want: Report{SilentLoss: 3},
		},
		{
			name: "duplicate channels in a subscription count once", chans: "a", pubs: map[string]string{"a": "AA"},
			subs: []string{"a,a|O a1 a2"},
			want: Report{Delivered: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(synthetic(t, tt.chans, tt.pubs, tt.subs...))
			examples := got.Examples
			got.Examples = nil
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("got %+v\nwant %+v\nexamples: %q", got, tt.want, examples)
			}
			if got.OK() != (tt.want.SilentLoss+tt.want.Duplicates+tt.want.Reorders+tt.want.Phantoms == 0) {
				t.Errorf("OK() = %v for %+v", got.OK(), got)
			}
		})
	}
}

// The checker can fail: a run recorded through a Recorder in which one
// subscriber drops one event, receives another twice and two more swapped
// is reported with exactly 1 loss, 1 duplicate and 1 reorder; the others,
// with what they missed covered by resets, pass.
func TestSelfTest(t *testing.T) {
	r := NewRecorder()
	chans := []string{"a", "b", "c"}
	type sub struct {
		rec   *SubscriberRecorder
		chans []string
	}
	subs := []sub{
		{chans: []string{"a"}}, {chans: []string{"b", "c"}}, {chans: []string{"a", "b", "c"}},
		{chans: []string{"a"}},      // the faulty one
		{chans: []string{"a", "b"}}, // reset after a reconnection
		{chans: []string{"c"}},      // mid-stream reset of its channel
	}
	for i := range subs {
		subs[i].rec = r.Subscriber(fmt.Sprint("sub", i), subs[i].chans...)
		subs[i].rec.Open()
	}
	data := func(ch string, seq int) string { return fmt.Sprintf(`{"seq":%d,"ch":%q}`, seq, ch) }
	deliver := func(s sub, ch string, seq int) {
		t.Helper()
		if err := s.rec.Event(data(ch, seq)); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 50 {
		var req *Request
		if round%2 == 0 {
			req = r.Begin(chans[round%3])
		} else {
			req = r.Begin(chans...) // a batch over every channel
		}
		req.Settle(Acked)
		batch := chans
		if round%2 == 0 {
			batch = chans[round%3 : round%3+1]
		}
		for i, ch := range batch {
			seq := req.Seqs[i]
			for n, s := range subs {
				if !slices.Contains(s.chans, ch) {
					continue
				}
				switch {
				case n == 3 && seq == 10: // dropped
				case n == 3 && seq == 20: // repeated
					deliver(s, ch, seq)
					deliver(s, ch, seq)
				case n == 3 && seq == 30: // swapped with 31
				case n == 3 && seq == 31:
					deliver(s, ch, 31)
					deliver(s, ch, 30)
				case n == 4 && round >= 10 && round < 14: // disconnected
				case n == 5 && ch == "c" && seq == 12:
					// lost with a reset, which comes after the next event
					// would have.
				case n == 5 && ch == "c" && seq == 13:
					s.rec.Reset(`{"reason":"history-unavailable","channel":"c"}`)
					deliver(s, ch, seq)
				default:
					deliver(s, ch, seq)
				}
			}
		}
		if round == 13 { // sub4 reconnects and is told of its gap
			subs[4].rec.End()
			subs[4].rec.Open()
			subs[4].rec.Reset(`{"reason":"history-unavailable"}`)
		}
	}
	rep := Check(r.Log())
	t.Logf("%v; examples: %q", rep, rep.Examples)
	if rep.SilentLoss != 1 || rep.Duplicates != 1 || rep.Reorders != 1 || rep.Phantoms != 0 {
		t.Errorf("got %+v, want exactly 1 loss, 1 duplicate, 1 reorder", rep)
	}
	// sub4 missed rounds 10 to 13: b, a b, a, a b; sub5 missed c#12.
	if rep.Resets != 2 || rep.Covered != 7 {
		t.Errorf("got %d resets covering %d events, want 2 covering 7", rep.Resets, rep.Covered)
	}
	if rep.OK() {
		t.Error("OK() with faults")
	}
	if want := 3; len(rep.Examples) != want {
		t.Errorf("examples %q, want %d", rep.Examples, want)
	}
	if lag := r.Lagging(); len(lag) != 0 {
		t.Errorf("lagging %q", lag)
	}
}

func TestLagging(t *testing.T) {
	r := NewRecorder()
	s := r.Subscriber("s", "a", "b")
	early := r.Begin("a") // before the open: not expected
	early.Settle(Acked)
	s.Open()
	if lag := r.Lagging(); len(lag) != 0 {
		t.Fatalf("lagging before any publish in the window: %q", lag)
	}
	q := r.Begin("a", "b")
	q.Settle(Acked)
	u := r.Begin("a")
	u.Settle(Unknown)
	if lag := r.Lagging(); len(lag) != 1 || !strings.Contains(lag[0], "a at #0 of #2") || !strings.Contains(lag[0], "b at #0 of #1") {
		t.Fatalf("lagging %q", lag)
	}
	_ = s.Event(`{"seq":2,"ch":"a"}`)
	_ = s.Event(`{"seq":1,"ch":"b"}`)
	if lag := r.Lagging(); len(lag) != 0 {
		t.Fatalf("lagging after catching up: %q", lag)
	}
	if n := r.Counts(); n[Acked] != 3 || n[Unknown] != 1 {
		t.Errorf("counts %v", n)
	}
}

func TestParsePayload(t *testing.T) {
	for _, tt := range []struct {
		data string
		want Payload
		ok   bool
	}{
		{`{"seq":3,"ch":"a"}`, Payload{Seq: 3, Ch: "a"}, true},
		{`{"ch":"a","seq":1,"x":true}`, Payload{Seq: 1, Ch: "a"}, true},
		{`{"seq":0,"ch":"a"}`, Payload{}, false},
		{`{"seq":1}`, Payload{}, false},
		{`{"n":1}`, Payload{}, false},
		{`[1]`, Payload{}, false},
		{``, Payload{}, false},
	} {
		got, err := ParsePayload(tt.data)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePayload(%q) = %v, %v", tt.data, got, err)
		}
		if err != nil && !errors.Is(err, ErrNotPayload) {
			t.Errorf("ParsePayload(%q): %v is not ErrNotPayload", tt.data, err)
		}
	}
}

func TestResetChannels(t *testing.T) {
	r := NewRecorder()
	s := r.Subscriber("s", "a", "b", "c")
	s.Reset(`{"reason":"x"}`)
	s.Reset(`{"reason":"x","channel":"a"}`)
	s.Reset(`{"reason":"x","channels":["b","c"]}`)
	s.Reset(`not json`)
	var got []string
	for _, it := range r.Log().Subscribers[0].Items {
		got = append(got, it.Channel)
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"", "a", "b", "c", ""}) {
		t.Errorf("reset channels %q", got)
	}
}
