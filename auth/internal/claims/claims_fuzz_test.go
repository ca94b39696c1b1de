package claims

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeClaims checks the strict claim decoder against encoding/json:
// it never panics, refuses with a Error only, accepts only what
// encoding/json accepts as one object, returns exactly the members that
// encoding/json sees (it has no duplicate to drop), and never accepts two
// names that fold to the same known claim.
func FuzzDecodeClaims(f *testing.F) {
	for _, s := range []string{
		`{"sub":"u1","tenant_id":"3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f","exp":1893553445}`,
		`{"exp":1,"EXP":2}`,
		`{"exp":1,"exp":2}`,
		`{"e\u0078p":1,"exp":2}`,
		`{"ſub":"a","sub":"b"}`,
		`{"x":{"x":1,"x":2}}`,
		`{"a":[1,{"b":null}],"c":"\ud800"}`,
		`{} {}`,
		`{}` + "\n",
		`[]`,
		`null`,
		`"x"`,
		"{\"a\":\"\xff\"}",
		`{"a":1,}`,
		`{"exp":"123"}`,
		`{"exp":1e400}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := Decode(payload)
		if err != nil {
			var ce Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a Error", err)
			}
			if got != nil {
				t.Fatal("refusal with claims")
			}
			return
		}
		if !utf8.Valid(payload) {
			t.Fatal("accepted invalid UTF-8")
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(payload, &want); err != nil || want == nil {
			t.Fatalf("accepted what encoding/json refuses: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d members, encoding/json sees %d", len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("member %q: %s, encoding/json: %s", k, got[k], v)
			}
		}
		for _, known := range knownClaims {
			n := 0
			for k := range got {
				if strings.EqualFold(k, known) {
					n++
				}
			}
			if n > 1 {
				t.Fatalf("accepted %d names folding to %q", n, known)
			}
		}
		for _, name := range [...]string{"exp", "nbf", "iat"} {
			if raw, ok := got[name]; ok {
				if _, err := NumericDate(name, raw); err == nil && raw[0] == '"' {
					t.Fatalf("%s as a string accepted", name)
				}
			}
		}
	})
}
