package redis

import (
	"errors"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/event"
)

// An idempotency record answers its positions only to the events whose
// fingerprint it holds; a record written before fingerprints were stored is
// compared by length, as it was written.
func TestDupPositions(t *testing.T) {
	const sum = "ab12"
	want := []event.Position{{Epoch: 7, Offset: 1}, {Epoch: 9, Offset: 4}}
	for _, tt := range []struct {
		name, record, sum string
		idx               []int
		err               error // nil: want's positions
	}{
		{"same events", "ab12 7 1 9 4", sum, []int{0, 1}, nil},
		{"other events", "ab12 7 1 9 4", "cd34", []int{0, 1}, broker.ErrIdempotencyConflict},
		{"fewer events", "ab12 7 1", sum, []int{0, 1}, broker.ErrIdempotencyConflict},
		{"more events", "ab12 7 1 9 4 9 5", sum, []int{0, 1}, broker.ErrIdempotencyConflict},
		{"record without fingerprint", "7 1 9 4", sum, []int{0, 1}, nil},
		{"record without fingerprint, other length", "7 1", sum, []int{0, 1}, broker.ErrIdempotencyConflict},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]event.Position, 2)
			err := dupPositions(tt.record, tt.sum, tt.idx, out)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(out, want) {
				t.Fatalf("= %v, %v; want %v", out, err, want)
			}
		})
	}
	if err := dupPositions("ab12 7 x 9 4", sum, []int{0, 1}, make([]event.Position, 2)); err == nil || errors.Is(err, broker.ErrIdempotencyConflict) {
		t.Fatalf("bad record: err = %v, want an error other than a conflict", err)
	}
}
