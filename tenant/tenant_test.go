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

// membershipFunc is a Membership of an embedder's that says nothing of the
// credential.
type membershipFunc func(auth.Principal, string) bool

func (f membershipFunc) IsMember(_ context.Context, p auth.Principal, tenant string) (bool, error) {
	return f(p, tenant), nil
}

// TestRechecksWithoutCredential: open streams may drop their credential
// only for a source that declares it never reads it.
func TestRechecksWithoutCredential(t *testing.T) {
	h, err := tenant.NewHTTP(tenant.HTTPConfig{URL: "https://app.example/tenants/{tenant}/members/{user}"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    tenant.Membership
		want bool
	}{
		{"nil (Token)", nil, true},
		{"Token", tenant.Token{}, true},
		{"File", &tenant.File{}, true},
		{"HTTP forwards it", h, false},
		{"an embedder's, undeclared", membershipFunc(func(auth.Principal, string) bool { return true }), false},
	} {
		if got := (tenant.Gate{Membership: tc.m}).RechecksWithoutCredential(); got != tc.want {
			t.Errorf("%s: RechecksWithoutCredential() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
