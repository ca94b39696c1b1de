package server

import (
	"strings"
	"testing"
)

func TestConfigOutbox(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string {
			if k == "SLUICE_JWT_SECRET" {
				return "config-outbox-test-secret-0123456789"
			}
			return kv[k]
		}
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		err  string // "" for none
	}{
		{"off by default", nil, ""},
		{"postgres", map[string]string{"SLUICE_OUTBOX": "postgres", "SLUICE_POSTGRES_URL": "postgres://relay@db/app"}, ""},
		{"needs a URL", map[string]string{"SLUICE_OUTBOX": "postgres"}, "SLUICE_POSTGRES_URL: required with SLUICE_OUTBOX=postgres"},
		{"unknown kind", map[string]string{"SLUICE_OUTBOX": "mysql"}, `SLUICE_OUTBOX: "mysql" is neither off nor postgres`},
		{"bad table", map[string]string{"SLUICE_OUTBOX": "postgres", "SLUICE_POSTGRES_URL": "postgres://relay@db/app", "SLUICE_OUTBOX_TABLE": "a;b"}, "SLUICE_OUTBOX_TABLE:"},
		{"bad URL, password not quoted", map[string]string{"SLUICE_OUTBOX": "postgres", "SLUICE_POSTGRES_URL": "postgres://u:hunter2@db:notaport/app"}, "SLUICE_POSTGRES_URL: not a PostgreSQL URL"},
		{"batch too large", map[string]string{"SLUICE_OUTBOX_BATCH": "20000"}, "SLUICE_OUTBOX_BATCH: at most 10000"},
		{"poll zero", map[string]string{"SLUICE_OUTBOX_POLL": "0s"}, "SLUICE_OUTBOX_POLL: must be more than zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig(nil, env(tc.env), nil)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("the error quotes the password: %v", err)
			case tc.err == "" && (c.OutboxTable != "sluice_outbox" || c.OutboxBatch != 2000 || c.OutboxPoll.String() != "1s"):
				t.Fatalf("defaults: %+v", c)
			}
		})
	}
}
