package testutil

import (
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	var n atomic.Int32
	Eventually(t, 5*time.Second, "the third call", func() bool { return n.Add(1) == 3 })
	if n.Load() != 3 {
		t.Fatalf("cond called %d times, want 3", n.Load())
	}
}

func TestBlockReader(t *testing.T) {
	const stream = ": hello\n\n" +
		"id: 1\r\nevent: a.b\ndata: x\ndata:y\n\n\n" +
		"id:\nretry: 3000\ndata\n\n" +
		"data: cut"
	r := NewBlockReader(strings.NewReader(stream))
	want := []Block{
		{Comments: []string{"hello"}},
		{ID: "1", HasID: true, Event: "a.b", Data: "x\ny"},
		{HasID: true, Retry: "3000"},
	}
	for i, w := range want {
		b, err := r.Next()
		if err != nil || b.String() != w.String() || b.HasID != w.HasID {
			t.Fatalf("block %d: %v %v, want %v", i, b, err, w)
		}
	}
	if !want[0].KeepAlive() || want[1].KeepAlive() || want[2].KeepAlive() {
		t.Error("KeepAlive: only the comment block is one")
	}
	if b, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("a block the stream ends in: %v %v, want io.EOF", b, err)
	}
}

// TestOnlyTestsImportIt: no package's non-test code imports testutil or
// benchutil, except each other (benchutil is test support too).
func TestOnlyTestsImportIt(t *testing.T) {
	if testing.Short() {
		t.Skip("go list of the whole module")
	}
	support := []string{"github.com/sluicehq/sluice/internal/testutil", "github.com/sluicehq/sluice/internal/benchutil"}
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/sluicehq/sluice/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || slices.Contains(support, f[0]) {
			continue
		}
		for _, p := range support {
			if slices.Contains(f[1:], p) {
				t.Errorf("%s imports %s outside its tests", f[0], p)
			}
		}
	}
}
