package tenant_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
	"github.com/sluicehq/sluice/tenant"
)

const (
	tenantA = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	tenantB = "0b6a4f52-6c2e-4e8a-9d71-2f0c8b7e5a13"
)

var alice = auth.Principal{User: "alice", Tenant: tenantA, Kind: auth.KindJWT, Credential: "Bearer alice-token"}

// counting is a Membership with fixed answers that counts its calls.
type counting struct {
	member bool
	err    error
	calls  atomic.Int32
}

func (c *counting) IsMember(context.Context, auth.Principal, string) (bool, error) {
	c.calls.Add(1)
	return c.member, c.err
}

func chans(names ...string) []channel.Name {
	out := make([]channel.Name, len(names))
	for i, n := range names {
		out[i] = channel.MustMake("scan", n, "r"+string(rune('0'+i)))
	}
	return out
}

// forbidden returns the code of a 403 problem, "" for nil, and fails for
// anything else.
func forbidden(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	p, ok := problem.As(err)
	if !ok || p.Status != http.StatusForbidden {
		t.Fatalf("want a 403 problem, got %v", err)
	}
	return p.Code
}

func TestGate(t *testing.T) {
	tests := []struct {
		name   string
		m      *counting
		p      auth.Principal
		chans  []channel.Name
		want   string
		asked  int32
		faulty bool
	}{
		{name: "own tenant, member", m: &counting{member: true}, p: alice, chans: chans(tenantA, tenantA, tenantA), asked: 1},
		{name: "own tenant, not member", m: &counting{}, p: alice, chans: chans(tenantA), want: problem.CodeNotMember, asked: 1},
		{name: "one foreign channel", m: &counting{member: true}, p: alice, chans: chans(tenantA, tenantB), want: problem.CodeForeignTenant},
		{name: "foreign before member check", m: &counting{}, p: alice, chans: chans(tenantB), want: problem.CodeForeignTenant},
		{name: "fault", m: &counting{err: errors.New("db down")}, p: alice, chans: chans(tenantA), faulty: true, asked: 1},
		{name: "no channels still asks", m: &counting{}, p: alice, want: problem.CodeNotMember, asked: 1},
		{name: "principal without tenant", m: &counting{member: true}, p: auth.Principal{User: "x"}, chans: chans(tenantA), want: problem.CodeForeignTenant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tenant.Gate{Membership: tt.m}.Check(context.Background(), tt.p, tt.chans)
			if tt.faulty {
				if !errors.Is(err, tenant.ErrUnavailable) || !errors.Is(err, tt.m.err) {
					t.Fatalf("fault: %v", err)
				}
				if _, ok := problem.As(err); ok {
					t.Fatal("a fault became a problem")
				}
			} else if got := forbidden(t, err); got != tt.want {
				t.Fatalf("code %q, want %q", got, tt.want)
			}
			if n := tt.m.calls.Load(); n != tt.asked {
				t.Fatalf("membership asked %d times, want %d", n, tt.asked)
			}
		})
	}
}

func TestGateDefaultsToToken(t *testing.T) {
	var g tenant.Gate
	if err := g.Check(context.Background(), alice, chans(tenantA)); err != nil {
		t.Fatal(err)
	}
	if forbidden(t, g.Check(context.Background(), alice, chans(tenantB))) != problem.CodeForeignTenant {
		t.Fatal("foreign channel allowed")
	}
}

func TestToken(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		p      auth.Principal
		tenant string
		want   bool
	}{
		{alice, tenantA, true},
		{alice, tenantB, false},
		{auth.Principal{User: "x"}, "", false},
	} {
		if got, err := (tenant.Token{}).IsMember(ctx, tt.p, tt.tenant); got != tt.want || err != nil {
			t.Errorf("Token.IsMember(%v, %q) = %v, %v", tt.p, tt.tenant, got, err)
		}
	}
}

func writeFile(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "members.json")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFile(t *testing.T) {
	f, err := tenant.NewFile(writeFile(t, `{"alice": ["`+tenantA+`", "`+tenantB+`"], "bob": ["`+tenantB+`"], "carol": []}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		user, tenant string
		want         bool
	}{
		{"alice", tenantA, true},
		{"alice", tenantB, true},
		{"bob", tenantA, false},
		{"bob", tenantB, true},
		{"carol", tenantA, false},
		{"dave", tenantA, false}, // absent user: not a member
		{"ALICE", tenantA, false},
	} {
		got, err := f.IsMember(ctx, auth.Principal{User: tt.user, Tenant: tt.tenant}, tt.tenant)
		if got != tt.want || err != nil {
			t.Errorf("%s in %s: %v %v, want %v", tt.user, tt.tenant[:8], got, err, tt.want)
		}
	}
	// Through the gate: bob's token names tenant A, where he is no member.
	bob := auth.Principal{User: "bob", Tenant: tenantA}
	if forbidden(t, tenant.Gate{Membership: f}.Check(ctx, bob, chans(tenantA))) != problem.CodeNotMember {
		t.Fatal("bob let into tenant A")
	}
}

func TestFileErrors(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"not json", `{`, "want {"},
		{"array", `[]`, "want {"},
		{"null", `null`, "null"},
		{"uppercase tenant", `{"alice": ["` + strings.ToUpper(tenantA) + `"]}`, `user "alice"`},
		{"braced tenant", `{"alice": ["{` + tenantA + `}"]}`, `user "alice"`},
		{"tenant not a string", `{"alice": [1]}`, "want {"},
		{"empty user", `{"": ["` + tenantA + `"]}`, "empty user"},
		{"trailing data", `{} {}`, "after"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tenant.NewFile(writeFile(t, tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := tenant.NewFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestFromSpec(t *testing.T) {
	ctx := context.Background()
	file := writeFile(t, `{"alice": ["`+tenantA+`"]}`)
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
		m, c, err := tenant.FromSpec(ctx, tt.spec, tenant.PostgresConfig{}, tenant.HTTPConfig{})
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
		_, _, err := tenant.FromSpec(ctx, spec, tenant.PostgresConfig{}, tenant.HTTPConfig{})
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
		if err := tenant.CheckSpec(spec); err != nil {
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
		err := tenant.CheckSpec(tt.spec)
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
		if _, _, err2 := tenant.FromSpec(context.Background(), tt.spec, tenant.PostgresConfig{}, tenant.HTTPConfig{}); err2 == nil {
			t.Errorf("%q: FromSpec accepted it", tt.spec)
		}
	}
}

// TestHTTPErrorShowsRedactedURL checks that a refused URL is shown, so that
// an operator sees which one, without its user info nor its query.
func TestHTTPErrorShowsRedactedURL(t *testing.T) {
	_, err := tenant.NewHTTP(tenant.HTTPConfig{URL: "https://svc:secretpw@{user}.app.example/m/{tenant}?key=secretkey"})
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if strings.Contains(msg, "secretpw") || strings.Contains(msg, "secretkey") || strings.Contains(msg, "svc") {
		t.Fatalf("error leaks a credential: %s", msg)
	}
	if !strings.Contains(msg, "app.example/m/{tenant}") {
		t.Fatalf("error %q does not show the redacted URL", msg)
	}
}
