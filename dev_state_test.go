package sluice

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
		if tc.cfg.JWTSecret != "" && gw.cfg.JWTSecret != tc.cfg.JWTSecret {
			t.Errorf("%s: the configured secret was replaced", tc.name)
		}
		page, err := renderConsole(d)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(tc.cfg.PublishKeys); len(gw.cfg.PublishKeys) != n+1 || gw.cfg.PublishKeys[n] != d.PublishKey ||
			strings.Contains(b.String(), "configured-key") || strings.Contains(string(page), "configured-key") {
			t.Errorf("%s: publisher keys %d, dev key %q", tc.name, len(gw.cfg.PublishKeys), d.PublishKey)
		}
		_ = gw.Close()
	}
}
