package redis

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
)

// TestRuns checks how a batch is split into publish script runs: one run on
// one Redis (all or nothing), one per channel, in the batch's order within
// each, on a Redis Cluster.
func TestRuns(t *testing.T) {
	a := channel.MustMake("t", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "a")
	b := channel.MustMake("t", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "b")
	big := make([]event.Message, 1000)
	for i := range big {
		big[i].Channel = channel.MustMake("t", "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", fmt.Sprint("c", i%3))
	}
	seq := func(lo, hi int) []int {
		var s []int
		for i := lo; i < hi; i++ {
			s = append(s, i)
		}
		return s
	}
	byChannel := append(append(seqStep(0, 1000, 3), seqStep(1, 1000, 3)...), seqStep(2, 1000, 3)...)
	for _, tt := range []struct {
		name    string
		msgs    []event.Message
		cluster bool
		order   []int
		ends    []int
	}{
		{"one", []event.Message{{Channel: a}}, false, []int{0}, []int{1}},
		{"one cluster", []event.Message{{Channel: a}}, true, []int{0}, []int{1}},
		{"mixed standalone", []event.Message{{Channel: a}, {Channel: b}, {Channel: a}}, false, []int{0, 1, 2}, []int{3}},
		{"mixed cluster", []event.Message{{Channel: b}, {Channel: a}, {Channel: b}, {Channel: a}}, true, []int{1, 3, 0, 2}, []int{2, 4}},
		{"large standalone", big, false, seq(0, len(big)), []int{len(big)}},
		{"large cluster", big, true, byChannel, []int{334, 667, 1000}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			order, ends := runs(tt.msgs, tt.cluster)
			if !slices.Equal(order, tt.order) || !slices.Equal(ends, tt.ends) {
				t.Fatalf("runs = %v %v, want %v %v", order, ends, tt.order, tt.ends)
			}
		})
	}
}

func seqStep(lo, hi, step int) []int {
	var s []int
	for i := lo; i < hi; i += step {
		s = append(s, i)
	}
	return s
}
