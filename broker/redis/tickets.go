package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/broker"
)

// PutTicket implements auth.TicketStore. The principal is stored as JSON,
// credential included, for the ticket's lifetime (about 30 s); whoever can
// read the Redis keys can read it, as they could read the tickets themselves.
func (b *Broker) PutTicket(ctx context.Context, id string, p auth.Principal, ttl time.Duration) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	v, err := json.Marshal(storedPrincipal{
		User: p.User, Tenant: p.Tenant, Kind: p.Kind,
		Expiry: p.Expiry, IssuedAt: p.IssuedAt, Credential: p.Credential,
	})
	if err != nil {
		return fmt.Errorf("redis broker: ticket: %w", err)
	}
	err = b.client.Do(ctx, b.client.B().Set().Key(b.prefix+"ticket:"+id).Value(string(v)).
		PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()).Error()
	if err != nil {
		return b.fail(ctx, "put ticket", err)
	}
	return nil
}

// TakeTicket implements auth.TicketStore with GETDEL: whichever instance
// asks first gets the principal, every later ask gets nothing.
func (b *Broker) TakeTicket(ctx context.Context, id string) (auth.Principal, bool, error) {
	if b.closed.Load() {
		return auth.Principal{}, false, broker.ErrClosed
	}
	v, err := b.client.Do(ctx, b.client.B().Getdel().Key(b.prefix+"ticket:"+id).Build()).AsBytes()
	if valkey.IsValkeyNil(err) {
		return auth.Principal{}, false, nil
	}
	if err != nil {
		return auth.Principal{}, false, b.fail(ctx, "take ticket", err)
	}
	var sp storedPrincipal
	if err := json.Unmarshal(v, &sp); err != nil {
		return auth.Principal{}, false, fmt.Errorf("redis broker: stored ticket is not readable: %w", err)
	}
	return auth.Principal{
		User: sp.User, Tenant: sp.Tenant, Kind: sp.Kind,
		Expiry: sp.Expiry, IssuedAt: sp.IssuedAt, Credential: sp.Credential,
	}, true, nil
}

// storedPrincipal is auth.Principal with JSON names fixed here, so that
// instances of one deployment agree whatever the field names become.
type storedPrincipal struct {
	User       string    `json:"user"`
	Tenant     string    `json:"tenant"`
	Kind       auth.Kind `json:"kind"`
	Expiry     time.Time `json:"exp"`
	IssuedAt   time.Time `json:"iat"`
	Credential string    `json:"cred"`
}

func (b *Broker) revKey(tenant, user string) string {
	if user == "" {
		return b.prefix + "rev:" + tenant
	}
	return b.prefix + "rev:" + tenant + ":" + user
}

// controlMsg announces a revocation on the control channel.
type controlMsg struct {
	Tenant string `json:"tenant"`
	User   string `json:"user,omitempty"`
	At     int64  `json:"at"` // Unix ns
}

// Revoke implements broker.Broker: the revocation is stored until r.At+ttl
// (a later revocation of the same tenant or user is kept) and announced on
// the control channel, which every instance, this one included, hands to its
// OnRevoke functions. An instance whose Pub/Sub connection is down when the
// announcement is made misses it; its periodic recheck (RevokedAt) still
// finds the stored revocation.
func (b *Broker) Revoke(ctx context.Context, r broker.Revocation, ttl time.Duration) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	msg, _ := json.Marshal(controlMsg{Tenant: r.Tenant, User: r.User, At: r.At.UnixNano()})
	until := max(r.At.Add(ttl).UnixMilli(), time.Now().UnixMilli()+1)
	res := b.execMulti(ctx, revoke, []valkey.LuaExec{{
		Keys: []string{b.revKey(r.Tenant, r.User)},
		Args: []string{fmt.Sprintf("%020d", r.At.UnixNano()), strconv.FormatInt(until, 10), b.control, string(msg)},
	}})[0]
	if err := res.Error(); err != nil {
		return b.fail(ctx, "revoke", err)
	}
	return nil
}

// OnRevoke implements broker.Broker.
func (b *Broker) OnRevoke(f func(broker.Revocation)) { b.handlers.Add(f) }

// RevokedAt implements auth.Revocations: the user's and the tenant's
// revocation in one round trip (two GETs, not an MGET: on a Redis Cluster
// the two keys may live in different slots); the later wins.
func (b *Broker) RevokedAt(ctx context.Context, tenant, user string) (time.Time, bool, error) {
	if b.closed.Load() {
		return time.Time{}, false, broker.ErrClosed
	}
	res := b.client.DoMulti(ctx,
		b.client.B().Get().Key(b.revKey(tenant, user)).Build(),
		b.client.B().Get().Key(b.revKey(tenant, "")).Build())
	var at time.Time
	found := false
	for _, r := range res {
		s, err := r.ToString()
		if valkey.IsValkeyNil(err) {
			continue // none
		}
		if err != nil {
			return time.Time{}, false, b.fail(ctx, "revoked at", err)
		}
		ns, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("redis broker: bad revocation value %q", s)
		}
		if t := time.Unix(0, ns); !found || t.After(at) {
			at, found = t, true
		}
	}
	return at, found, nil
}
