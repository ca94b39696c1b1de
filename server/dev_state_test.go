package server

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestDevStateFile: --dev creates its state file with mode 0600, reads it
// back on the next start, refuses one it did not write, and several starts
// at once agree on one state.
func TestDevStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice", "dev.json")
	st1, kept, err := loadDevState(path)
	if err != nil || kept {
		t.Fatalf("first: kept %v, %v", kept, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	st2, kept, err := loadDevState(path)
	if err != nil || !kept || st2 != st1 {
		t.Fatalf("second: %+v kept %v %v, want %+v", st2, kept, err, st1)
	}

	if err := os.WriteFile(path, []byte(`{"jwt_secret":"short"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadDevState(path); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("a damaged state file: %v", err)
	}

	race := filepath.Join(t.TempDir(), "dev.json")
	states := make([]DevState, 8)
	var wg sync.WaitGroup
	for i := range states {
		wg.Go(func() {
			st, _, err := loadDevState(race)
			if err != nil {
				t.Error(err)
			}
			states[i] = st
		})
	}
	wg.Wait()
	for _, st := range states[1:] {
		if st != states[0] {
			t.Fatalf("starts at once disagree: %+v vs %+v", st, states[0])
		}
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(race), ".dev-*"))
	if len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestDevSetup: the banner tells where the secret came from, and the dev
// publisher key is never a configured one but is accepted besides them.
func TestDevSetup(t *testing.T) {
	state := filepath.Join(t.TempDir(), "dev.json")
	for _, tc := range []struct {
		name       string
		cfg        Config
		wantSecret string
		banner     string
	}{
		{"no state file", Config{Dev: true}, DevSecretGenerated, "signing secret: generated at this start (not kept"},
		{"new state file", Config{Dev: true, DevStateFile: state}, DevSecretGenerated, "signing secret: generated now, kept in " + state},
		{"kept", Config{Dev: true, DevStateFile: state}, DevSecretKept, "signing secret: kept in " + state},
		{"configured", Config{Dev: true, DevStateFile: state, JWTSecret: "configured-secret-0123456789abcdef", PublishKeys: []string{"configured-key-0123456789"}},
			DevSecretConfigured, "signing secret: SLUICE_JWT_SECRET (configured)"},
	} {
		gw, err := New(context.Background(), tc.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		d, _ := gw.Dev()
		var b bytes.Buffer
		PrintDev(&b, "http://127.0.0.1:8080", d)
		if d.Secret != tc.wantSecret || !strings.Contains(b.String(), tc.banner) {
			t.Errorf("%s: secret %q, banner:\n%s", tc.name, d.Secret, b.String())
		}
		if tc.cfg.JWTSecret != "" {
			if _, err := jwt.Parse(d.Token, func(*jwt.Token) (any, error) { return []byte(tc.cfg.JWTSecret), nil }); err != nil {
				t.Errorf("%s: the configured secret was replaced: %v", tc.name, err)
			}
		}
		page, err := renderConsole(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range append(slices.Clone(tc.cfg.PublishKeys), d.PublishKey) {
			if code := publishWith(gw, k, d.Channel.String()); code != http.StatusOK {
				t.Errorf("%s: publishing with key %q: %d", tc.name, k, code)
			}
		}
		if strings.Contains(b.String(), "configured-key") || strings.Contains(string(page), "configured-key") {
			t.Errorf("%s: a configured publisher key is shown", tc.name)
		}
		_ = gw.Close()
	}
}

// publishWith publishes one event to ch through s's handler with the
// publisher key k and returns the status.
func publishWith(s *Server, k, ch string) int {
	r := httptest.NewRequest(http.MethodPost, "/publish", strings.NewReader(`{"channel":"`+ch+`","event":"demo.said","data":1}`))
	r.Header.Set("Authorization", "Bearer "+k)
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w.Code
}
