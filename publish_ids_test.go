package sluice

import (
	"math"
	"net/http/httptest"
	"testing"

	"github.com/sluicehq/sluice/event"
)

// TestWriteIDs checks that the publish answer is byte for byte what
// writeJSON wrote for it.
func TestWriteIDs(t *testing.T) {
	for _, pos := range [][]event.Position{
		nil,
		{{Epoch: 7, Offset: 1}},
		{{}, {Epoch: 35, Offset: 7}, {Epoch: math.MaxUint64, Offset: math.MaxUint64}},
	} {
		ids := make([]string, len(pos))
		for i, p := range pos {
			ids[i] = p.String()
		}
		want := httptest.NewRecorder()
		writeJSON(want, 200, struct {
			IDs []string `json:"ids"`
		}{ids})
		got := httptest.NewRecorder()
		writeIDs(got, pos)
		if got.Body.String() != want.Body.String() || got.Code != want.Code {
			t.Errorf("writeIDs(%v) = %d %q, want %d %q", pos, got.Code, got.Body, want.Code, want.Body)
		}
		for k, v := range want.Header() {
			if g := got.Header()[k]; len(g) != len(v) || g[0] != v[0] {
				t.Errorf("writeIDs(%v): header %s = %q, want %q", pos, k, g, v)
			}
		}
	}
}
