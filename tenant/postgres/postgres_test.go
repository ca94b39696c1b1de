package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/tenant"
	"github.com/sluicehq/sluice/tenant/postgres"
)

const (
	tenantA = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	tenantB = "0b6a4f52-6c2e-4e8a-9d71-2f0c8b7e5a13"
)

// pgEnv is a schema with a memberships table under row-level security, and a
// non-superuser role to query it, created for one test and dropped after.
type pgEnv struct {
	admin   *pgx.Conn
	schema  string
	role    string
	roleURL string
}

func newPGEnv(t *testing.T) *pgEnv {
	t.Helper()
	adminURL := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if adminURL == "" {
		t.Skip("set SLUICE_TEST_POSTGRES_URL=postgres://… to run")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("connecting to SLUICE_TEST_POSTGRES_URL: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sluice_test_" + hex.EncodeToString(b[:])
	e := &pgEnv{admin: admin, schema: name, role: name + "_r"}
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(e.role)
	e.roleURL = u.String()
	t.Cleanup(func() {
		ctx := context.Background()
		// Connections of the role must be gone before it is dropped.
		_, _ = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", e.role)
		if _, err := admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+e.schema+" CASCADE"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if _, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+e.role); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		admin.Close(ctx)
	})
	for _, q := range []string{
		"CREATE ROLE " + e.role + " LOGIN NOSUPERUSER NOBYPASSRLS",
		"CREATE SCHEMA " + e.schema,
		"CREATE TABLE " + e.schema + ".memberships (user_id text NOT NULL, tenant_id text NOT NULL, PRIMARY KEY (user_id, tenant_id))",
		"ALTER TABLE " + e.schema + ".memberships ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + e.schema + ".memberships FORCE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_isolation ON " + e.schema + ".memberships USING (tenant_id = current_setting('app.tenant_id', true))",
		"GRANT USAGE ON SCHEMA " + e.schema + " TO " + e.role,
		"GRANT SELECT ON " + e.schema + ".memberships TO " + e.role,
		"INSERT INTO " + e.schema + ".memberships VALUES ('alice', '" + tenantA + "'), ('alice', '" + tenantB + "'), ('bob', '" + tenantB + "')",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return e
}

func (e *pgEnv) open(t *testing.T, cfg postgres.Config) *postgres.Membership {
	t.Helper()
	cfg.URL = e.roleURL
	p, err := postgres.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func (e *pgEnv) query(where string) string {
	return "SELECT 1 FROM " + e.schema + ".memberships WHERE " + where
}

func member(t *testing.T, m tenant.Membership, user, tnt string) bool {
	t.Helper()
	ok, err := m.IsMember(context.Background(), auth.Principal{User: user, Tenant: tnt}, tnt)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestPostgres(t *testing.T) {
	e := newPGEnv(t)
	p := e.open(t, postgres.Config{Query: e.query("user_id = $1 AND tenant_id = $2"), CacheTTL: -1})
	for _, tt := range []struct {
		user, tenant string
		want         bool
	}{
		{"alice", tenantA, true},
		{"alice", tenantB, true},
		{"bob", tenantA, false},
		{"bob", tenantB, true},
		{"dave", tenantA, false},
		{"alice", "x'); DROP TABLE memberships; --", false},
	} {
		if got := member(t, p, tt.user, tt.tenant); got != tt.want {
			t.Errorf("%s in %.8s: %v, want %v", tt.user, tt.tenant, got, tt.want)
		}
	}
}

// TestPostgresRowLevelSecurity shows the tenant setting reaches the policy:
// a query that does not filter on the tenant still sees only the rows of
// the tenant asked about.
func TestPostgresRowLevelSecurity(t *testing.T) {
	e := newPGEnv(t)
	ctx := context.Background()

	// The role is subject to RLS, and sees nothing without the setting.
	role, err := pgx.Connect(ctx, e.roleURL)
	if err != nil {
		t.Fatal(err)
	}
	defer role.Close(ctx)
	var super, bypass bool
	if err := role.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&super, &bypass); err != nil {
		t.Fatal(err)
	}
	if super || bypass {
		t.Fatal("test role bypasses row-level security")
	}
	var n int
	if err := role.QueryRow(ctx, "SELECT count(*) FROM "+e.schema+".memberships").Scan(&n); err != nil || n != 0 {
		t.Fatalf("without the setting the role sees %d rows (%v)", n, err)
	}

	p := e.open(t, postgres.Config{Query: e.query("user_id = $1 AND $2::text IS NOT NULL"), CacheTTL: -1})
	if !member(t, p, "bob", tenantB) {
		t.Fatal("bob not a member of B")
	}
	if member(t, p, "bob", tenantA) {
		t.Fatal("row-level security not applied: bob's row of tenant B seen for tenant A")
	}

	// The setting is local to each check's transaction.
	var setting *string
	if err := role.QueryRow(ctx, "SELECT current_setting('app.tenant_id', true)").Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != nil && *setting != "" {
		t.Fatalf("setting leaked to another session: %q", *setting)
	}
}

func TestPostgresCache(t *testing.T) {
	e := newPGEnv(t)
	cached := e.open(t, postgres.Config{Query: e.query("user_id = $1 AND tenant_id = $2"), CacheTTL: time.Hour})
	uncached := e.open(t, postgres.Config{Query: e.query("user_id = $1 AND tenant_id = $2"), CacheTTL: -1})
	if !member(t, cached, "alice", tenantA) || member(t, cached, "bob", tenantA) {
		t.Fatal("wrong first answers")
	}
	ctx := context.Background()
	if _, err := e.admin.Exec(ctx, "DELETE FROM "+e.schema+".memberships WHERE user_id = 'alice'"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Exec(ctx, "INSERT INTO "+e.schema+".memberships VALUES ('bob', '"+tenantA+"')"); err != nil {
		t.Fatal(err)
	}
	if !member(t, cached, "alice", tenantA) || member(t, cached, "bob", tenantA) {
		t.Fatal("cached answers not reused")
	}
	if member(t, uncached, "alice", tenantA) || !member(t, uncached, "bob", tenantA) {
		t.Fatal("uncached source answers from a cache")
	}
}

func TestPostgresPoolBounded(t *testing.T) {
	e := newPGEnv(t)
	p := e.open(t, postgres.Config{Query: e.query("user_id = $1 AND tenant_id = $2"), CacheTTL: -1, MaxConns: 2})
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if ok, err := p.IsMember(context.Background(), auth.Principal{User: "bob"}, tenantB); !ok || err != nil {
				t.Errorf("%v %v", ok, err)
			}
		})
	}
	wg.Wait()
	var n int
	if err := e.admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", e.role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 2 {
		t.Fatalf("%d connections open, MaxConns 2", n)
	}
}

func TestPostgresErrors(t *testing.T) {
	e := newPGEnv(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		cfg  postgres.Config
		want string
	}{
		{"no URL", postgres.Config{}, "URL"},
		{"bad URL", postgres.Config{URL: "postgres://u:secretpw@[::1"}, "cannot parse"},
		{"missing table", postgres.Config{URL: e.roleURL}, "memberships"},
		{"one parameter", postgres.Config{URL: e.roleURL, Query: e.query("user_id = $1")}, "parameters"},
		{"syntax", postgres.Config{URL: e.roleURL, Query: "SELEKT"}, "syntax"},
		{"bad setting", postgres.Config{URL: e.roleURL, Query: e.query("user_id = $1 AND tenant_id = $2"), TenantSetting: "nodot"}, "setting"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := postgres.New(ctx, tt.cfg)
			if err == nil {
				p.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("error %q, want one mentioning %q", err, tt.want)
			}
		})
	}

	// A closed pool is a fault, not a "no".
	p := e.open(t, postgres.Config{Query: e.query("user_id = $1 AND tenant_id = $2"), CacheTTL: -1})
	p.Close()
	if _, err := p.IsMember(ctx, auth.Principal{User: "bob"}, tenantB); err == nil {
		t.Fatal("closed pool answered")
	}
}
