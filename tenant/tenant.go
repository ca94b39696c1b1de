// Package tenant is the second layer of authorization (protocol.md §3): the tenant
// gate, which every request passes after its channels are resolved, and the
// membership sources it asks.
//
// The gate refuses, with 403, a request for any channel outside the
// principal's active tenant, and a principal that is not a member of that
// tenant. Membership comes from a Membership: Token (the default: the
// token's tenant claim is trusted), File or HTTP of this package, the SQL
// query of package tenant/postgres (apart, so that only who opts into it
// compiles pgx), or any implementation of the embedder's. Package
// tenant/source chooses one by its SLUICE_MEMBERSHIP name. Every fault of a
// membership source fails closed: the gate returns it and the caller answers
// 503, never a stream.
package tenant

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/problem"
)

// ErrUnavailable wraps every fault of a membership source returned by
// Gate.Check; callers answer it with 503 (fail closed).
var ErrUnavailable = errors.New("tenant: membership source unavailable")

// Membership tells whether a principal is a member of a tenant.
//
// IsMember is called concurrently, from every request and from the periodic
// recheck of open streams (SLUICE_RECHECK_INTERVAL); implementations are
// safe for concurrent use and honour ctx. It answers (true, nil) for a
// member and (false, nil) for a non-member, including a user the source does
// not know at all. A non-nil error means the source could not answer (a
// fault: database down, backend unreachable); the answer is then ignored and
// callers fail closed (503 on a request; on an open stream, the stream is not
// extended on a guess).
type Membership interface {
	IsMember(ctx context.Context, p auth.Principal, tenant string) (bool, error)
}

// CredentialReader is implemented by a Membership to say whether IsMember
// reads Principal.Credential (HTTP forwards it to its backend). The gate
// lets open streams drop their credential only for a source that says it
// does not (Gate.RechecksWithoutCredential); one that does not implement
// CredentialReader is taken to read it. A type that embeds Token or *File
// inherits their "false": if its own IsMember reads the credential, it must
// override ReadsCredential.
type CredentialReader interface {
	ReadsCredential() bool
}

// Token is the default Membership: it trusts the tenant claim of the
// credential, so a principal is a member of its own active tenant only.
type Token struct{}

var (
	_ Membership       = Token{}
	_ CredentialReader = Token{}
)

// ReadsCredential implements CredentialReader: false.
func (Token) ReadsCredential() bool { return false }

// IsMember implements Membership: tenant == p.Tenant.
func (Token) IsMember(_ context.Context, p auth.Principal, tenant string) (bool, error) {
	return p.Tenant != "" && tenant == p.Tenant, nil
}

// Gate is the tenant gate (protocol.md §3). The zero Gate uses Token.
type Gate struct {
	// Membership answers membership; nil means Token.
	Membership Membership
}

// RechecksWithoutCredential reports whether the gate's membership source
// answers without Principal.Credential (it implements CredentialReader and
// says so; Token, File and postgres.Membership do): an open stream then
// drops its credential rather than hold it for its rechecks
// (stream.CredentialBlind).
func (g Gate) RechecksWithoutCredential() bool {
	if g.Membership == nil {
		return true
	}
	cr, ok := g.Membership.(CredentialReader)
	return ok && !cr.ReadsCredential()
}

// Check lets p read chans or refuses the whole request:
//
//   - a *problem.Problem 403 problem.CodeForeignTenant if any channel's
//     tenant is not p.Tenant (a stream never opens with a subset);
//   - a *problem.Problem 403 problem.CodeNotMember if p is not a member of
//     its active tenant;
//   - an error wrapping ErrUnavailable and the membership source's error if
//     it could not answer: a fault, which the caller answers with 503.
//
// Membership is asked once per distinct tenant (all channels share p.Tenant
// once the first rule holds, so at most once), and even for an empty chans.
func (g Gate) Check(ctx context.Context, p auth.Principal, chans []channel.Name) error {
	if channel.CheckTenant(p.Tenant) != nil {
		return problem.New(http.StatusForbidden, problem.CodeForeignTenant, "the credential names no valid tenant")
	}
	for _, c := range chans {
		if c.Tenant() != p.Tenant {
			return problem.New(http.StatusForbidden, problem.CodeForeignTenant,
				"channel "+c.String()+" belongs to another tenant than the credential's")
		}
	}
	m := g.Membership
	if m == nil {
		m = Token{}
	}
	ok, err := m.IsMember(ctx, p, p.Tenant)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !ok {
		return problem.New(http.StatusForbidden, problem.CodeNotMember, "not a member of the tenant")
	}
	return nil
}
