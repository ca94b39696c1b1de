package redis

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// TestRuns checks how a batch is split into publish script runs, and
// whether its runs must apply in order.
func TestRuns(t *testing.T) {
	a := channel.MustMake("t", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "a")
	b := channel.MustMake("t", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "b")
	big := make([]event.Message, 2*maxScriptBatch+1)
	for i := range big {
		big[i].Channel = a
	}
	many := make([]event.Message, maxScriptBatch+1) // a channel each, two runs
	for i := range many {
		many[i].Channel = channel.MustMake("t", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", fmt.Sprint("c", i))
	}
	manyTwice := slices.Clone(many)
	manyTwice[maxScriptBatch].Channel = many[0].Channel // in the first run and the second
	seq := func(lo, hi int) []int {
		var s []int
		for i := lo; i < hi; i++ {
			s = append(s, i)
		}
		return s
	}
	for _, tt := range []struct {
		name    string
		msgs    []event.Message
		cluster bool
		order   []int
		ends    []int
		split   bool // a channel in more than one run
	}{
		{"one", []event.Message{{Channel: a}}, false, []int{0}, []int{1}, false},
		{"mixed standalone", []event.Message{{Channel: a}, {Channel: b}, {Channel: a}}, false, []int{0, 1, 2}, []int{3}, false},
		{"mixed cluster", []event.Message{{Channel: b}, {Channel: a}, {Channel: b}, {Channel: a}}, true, []int{1, 3, 0, 2}, []int{2, 4}, false},
		{"large standalone", big, false, seq(0, len(big)), []int{maxScriptBatch, 2 * maxScriptBatch, len(big)}, true},
		{"large cluster", big, true, seq(0, len(big)), []int{maxScriptBatch, 2 * maxScriptBatch, len(big)}, true},
		{"many channels standalone", many, false, seq(0, len(many)), []int{maxScriptBatch, len(many)}, false},
		{"many channels, one twice", manyTwice, false, seq(0, len(manyTwice)), []int{maxScriptBatch, len(manyTwice)}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			order, ends := runs(tt.msgs, tt.cluster)
			if !slices.Equal(order, tt.order) || !slices.Equal(ends, tt.ends) {
				t.Fatalf("runs = %v %v, want %v %v", order, ends, tt.order, tt.ends)
			}
			if got := split(tt.msgs, order, ends); got != tt.split {
				t.Fatalf("split = %v, want %v", got, tt.split)
			}
		})
	}
}
