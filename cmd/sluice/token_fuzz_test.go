package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseClaim: any --claim value is either refused or gives a claim name
// that no flag owns and a value that encodes as JSON.
func FuzzParseClaim(f *testing.F) {
	for _, s := range []string{"role=admin", "n=3", `roles=["a"]`, "x=null", "sub=u", "=", "a==", `o={"a":1}`, "big=1e999", "s=\"\\u0000\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, v, err := parseClaim(s)
		if err != nil {
			return
		}
		if k == "" || strings.Contains(k, "=") {
			t.Fatalf("%q: name %q", s, k)
		}
		if _, reserved := reservedClaims[k]; reserved {
			t.Fatalf("%q: reserved claim %q accepted", s, k)
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("%q: value %#v does not encode: %v", s, v, err)
		}
	})
}
