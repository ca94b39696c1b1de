package tenant

import (
	"strconv"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCache[string](time.Second, 100, func() time.Time { return now })
	c.put("a", true)
	c.put("b", false)
	if m, ok := c.get("a"); !ok || !m {
		t.Fatal("positive answer lost")
	}
	if m, ok := c.get("b"); !ok || m {
		t.Fatal("negative answer lost")
	}
	now = now.Add(time.Second)
	if _, ok := c.get("a"); ok {
		t.Fatal("answer outlived its TTL")
	}
	for i := range 1000 {
		c.put(strconv.Itoa(i), true)
		if n := c.len(); n > 100 {
			t.Fatalf("cache holds %d entries, bound 100", n)
		}
	}
	if _, ok := c.get("999"); !ok {
		t.Fatal("latest entry evicted")
	}

	off := newCache[string](-1, 0, nil)
	off.put("a", true)
	if _, ok := off.get("a"); ok {
		t.Fatal("disabled cache answered")
	}
}
