package redis

import (
	"errors"
	"strings"
	"testing"
)

func TestClusterURL(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", ""},
		{"redis://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002/0",
			"redis://127.0.0.1:7000/0?addr=127.0.0.1%3A7001&addr=127.0.0.1%3A7002", ""},
		{"rediss://:secret@h1:7000,h2:7000/0?dial_timeout=1s",
			"rediss://:secret@h1:7000/0?addr=h2%3A7000&dial_timeout=1s", ""},
		{"redis://:secret@h1:7000,,h2:7000/0", "", "empty node"},
	} {
		got, err := clusterURL(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "secret") {
				t.Errorf("clusterURL(%q) error = %v, want one saying %q without the password", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("clusterURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestOperatorHint(t *testing.T) {
	for _, tt := range []struct {
		err  string
		want string // part of the hint; empty: none
	}{
		{"WRONGPASS invalid username-password pair or user is disabled.", "credentials"},
		{"NOAUTH Authentication required.", "credentials"},
		{"tls: failed to verify certificate: x509: certificate signed by unknown authority", "not trusted"},
		{"tls: first record does not look like a TLS handshake", "TLS with Redis failed"},
		{"dial tcp 127.0.0.1:6390: connect: connection refused", ""},
		{"EOF", ""},
	} {
		got := operatorHint(errors.New(tt.err))
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("operatorHint(%q) = %q, want one containing %q", tt.err, got, tt.want)
		}
	}
}
