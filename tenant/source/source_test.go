package source_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/tenant"
	"github.com/sluicehq/sluice/tenant/postgres"
	"github.com/sluicehq/sluice/tenant/source"
)

const (
	tenantA = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	tenantB = "0b6a4f52-6c2e-4e8a-9d71-2f0c8b7e5a13"
)

func TestFromSpec(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "members.json")
	if err := os.WriteFile(file, []byte(`{"alice": ["`+tenantA+`"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		spec string
		want any
	}{
		{"", tenant.Token{}},
		{"token", tenant.Token{}},
		{"file:" + file, (*tenant.File)(nil)},
		{"http:https://app.example/tenants/{tenant}/members/{user}", (*tenant.HTTP)(nil)},
		{"http://app.example/m/{tenant}", (*tenant.HTTP)(nil)},
		{"https://app.example/m/{tenant}", (*tenant.HTTP)(nil)},
	} {
		m, c, err := source.FromSpec(ctx, tt.spec, postgres.Config{}, tenant.HTTPConfig{})
		if err != nil {
			t.Errorf("%q: %v", tt.spec, err)
			continue
		}
		if c == nil || c.Close() != nil {
			t.Errorf("%q: closer", tt.spec)
		}
		switch tt.want.(type) {
		case tenant.Token:
			_, ok := m.(tenant.Token)
			if !ok {
				t.Errorf("%q: got %T", tt.spec, m)
			}
		case *tenant.File:
			if _, ok := m.(*tenant.File); !ok {
				t.Errorf("%q: got %T", tt.spec, m)
			}
		case *tenant.HTTP:
			if _, ok := m.(*tenant.HTTP); !ok {
				t.Errorf("%q: got %T", tt.spec, m)
			}
		}
	}
	for _, spec := range []string{"tokens", "token:x", "file:", "file:/nonexistent", "postgres:x", "http:", "http:ftp://x",
		"ldap://u:secretpw@host", "postgres"} {
		_, _, err := source.FromSpec(ctx, spec, postgres.Config{}, tenant.HTTPConfig{})
		if err == nil {
			t.Errorf("%q accepted", spec)
		} else if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%q: error leaks the password: %v", spec, err)
		}
	}
}

// TestCheckSpec covers the SLUICE_MEMBERSHIP forms a start accepts, checked
// without opening anything, and that no error echoes a credential of the URL.
func TestCheckSpec(t *testing.T) {
	for _, spec := range []string{
		"", "token", "file:/etc/sluice/members.json", "postgres",
		"http:https://app.example/tenants/{tenant}/members/{user}",
		"http:http://app.internal:8000/m/{tenant}/{user}",
		"https://app.example/tenants/{tenant}/members/{user}",
		"http://app.example/m?tenant={tenant}&user={user}",
		"https://svc:s3cret@app.example/m/{tenant}",
	} {
		if err := source.CheckSpec(spec); err != nil {
			t.Errorf("%q: %v", spec, err)
		}
	}
	for _, tt := range []struct{ spec, want string }{
		{"tokens", "token, file:<path>, postgres or http:<url>"},
		{"ldap://u:secretpw@host/x?key=secretkey", "token, file:<path>, postgres or http:<url>"},
		{"secretpw", "token, file:<path>, postgres or http:<url>"},
		{"token:x", "no argument"},
		{"file:", "path"},
		{"postgres:x", "no argument"},
		{"http:", "http(s) URL"},
		{"http:ftp://u:secretpw@x/?key=secretkey", "http(s) URL"},
		{"http:app.example/{tenant}", "http(s) URL"},
		{"https://", "http(s) URL"},
		{"https:app.example", "http(s) URL"},
		{"https://u:secretpw@{user}.example/m?key=secretkey", "host"},
		{"https://u:secretpw@app.example:{tenant}/m?key=secretkey", "host"},
		{"https://u:secretpw@app.example/m/{tenant}/{who}?key=secretkey", "{who}"},
		{"https://u:secretpw@app.example/m/{tenant?key=secretkey", "placeholder"},
		{"https://u:secretpw@app.example/m/\x7f?key=secretkey", "http(s) URL"},
	} {
		err := source.CheckSpec(tt.spec)
		if err == nil {
			t.Errorf("%q accepted", tt.spec)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %q, want one saying %q", tt.spec, err, tt.want)
		}
		for _, secret := range []string{"secretpw", "secretkey"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%q: error leaks a credential: %v", tt.spec, err)
			}
		}
		// FromSpec refuses it the same way.
		if _, _, err2 := source.FromSpec(context.Background(), tt.spec, postgres.Config{}, tenant.HTTPConfig{}); err2 == nil {
			t.Errorf("%q: FromSpec accepted it", tt.spec)
		}
	}
}

// TestPostgresFromSpec opens the postgres source by its name, with a query
// that needs no table.
func TestPostgresFromSpec(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("set SLUICE_TEST_POSTGRES_URL=postgres://… to run")
	}
	m, c, err := source.FromSpec(context.Background(), "postgres",
		postgres.Config{URL: url, Query: "SELECT 1 WHERE $1::text = 'bob' AND $2::text = '" + tenantB + "'"}, tenant.HTTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := m.(*postgres.Membership); !ok {
		t.Fatalf("got %T", m)
	}
	for _, tt := range []struct {
		user, tenant string
		want         bool
	}{{"bob", tenantB, true}, {"bob", tenantA, false}, {"alice", tenantB, false}} {
		ok, err := m.IsMember(context.Background(), auth.Principal{User: tt.user, Tenant: tt.tenant}, tt.tenant)
		if err != nil || ok != tt.want {
			t.Errorf("%s in %.8s: %v, %v; want %v", tt.user, tt.tenant, ok, err, tt.want)
		}
	}
}
