// Package postgres is a membership source of the tenant gate backed by a SQL
// query on PostgreSQL (SLUICE_MEMBERSHIP=postgres), through pgx. It is apart
// from package tenant so that only an embedder who opts into it compiles
// pgx.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/internal/answercache"
	"github.com/sluicehq/sluice/tenant"
)

// Config configures a postgres membership source. Its zero value (with URL
// set) means the defaults below.
type Config struct {
	// URL is the connection string, e.g.
	// postgres://sluice@db/app?sslmode=verify-full. Use a role without
	// BYPASSRLS that is not a superuser, so row-level security applies.
	URL string

	// Query is run with $1 = user id and $2 = tenant id; any row means
	// member. Default DefaultQuery. It must take exactly these two
	// parameters; New checks it against the database at start.
	Query string

	// TenantSetting is the setting that carries the tenant to row-level
	// security policies, set for the transaction of each check (like SET
	// LOCAL) with set_config(TenantSetting, tenant, true) before Query runs.
	// Default "app.tenant_id"; a policy reads it with
	// current_setting('app.tenant_id', true).
	TenantSetting string

	// MaxConns bounds the connection pool. Default 4.
	MaxConns int32

	// CacheTTL is how long an answer (member or not) is reused. Zero means
	// tenant.DefaultCacheTTL (5s); negative disables the cache.
	CacheTTL time.Duration

	// CacheSize bounds the answers kept. Zero means tenant.DefaultCacheSize.
	CacheSize int
}

// Defaults of Config.
const (
	DefaultQuery         = "SELECT 1 FROM memberships WHERE user_id = $1 AND tenant_id = $2"
	DefaultTenantSetting = "app.tenant_id"
	DefaultMaxConns      = 4
)

// Membership is a tenant.Membership backed by a SQL query
// (SLUICE_MEMBERSHIP=postgres). Each check runs in its own read-only
// transaction that first sets the tenant setting for row-level security,
// then runs the query. Answers are cached briefly; faults are not. It is
// safe for concurrent use; Close releases the pool.
type Membership struct {
	pool    *pgxpool.Pool
	query   string
	setting string
	ttl     time.Duration
	cache   *answercache.Cache[bool]
}

var _ tenant.Membership = (*Membership)(nil)

// New connects (bounded by ctx), and checks that the query is valid and
// takes two parameters, so that a mistake fails the start rather than the
// first request.
func New(ctx context.Context, cfg Config) (*Membership, error) {
	if cfg.URL == "" {
		return nil, errors.New("tenant: postgres membership needs a connection URL")
	}
	if cfg.Query == "" {
		cfg.Query = DefaultQuery
	}
	if cfg.TenantSetting == "" {
		cfg.TenantSetting = DefaultTenantSetting
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConns < 0 {
		return nil, errors.New("tenant: postgres MaxConns must be positive")
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = tenant.DefaultCacheTTL
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// The error may quote the URL, password included.
		return nil, errors.New("tenant: postgres membership: cannot parse the connection URL")
	}
	pc.MaxConns = cfg.MaxConns
	pc.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("tenant: postgres membership: %w", err)
	}
	p := &Membership{pool: pool, query: cfg.Query, setting: cfg.TenantSetting,
		ttl: cfg.CacheTTL, cache: answercache.New[bool](cfg.CacheSize)}
	if err := p.check(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return p, nil
}

// check prepares the query once to validate it.
func (p *Membership) check(ctx context.Context) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("tenant: postgres membership: connecting: %w", err)
	}
	defer conn.Release()
	sd, err := conn.Conn().Prepare(ctx, "", p.query)
	if err != nil {
		return fmt.Errorf("tenant: postgres membership query: %w", err)
	}
	if n := len(sd.ParamOIDs); n != 2 {
		return fmt.Errorf("tenant: postgres membership query takes %d parameters; it must take $1 (user id) and $2 (tenant id)", n)
	}
	if _, err := conn.Exec(ctx, "SELECT set_config($1, '', true)", p.setting); err != nil {
		return fmt.Errorf("tenant: postgres membership tenant setting %q: %w", p.setting, err)
	}
	return nil
}

// ReadsCredential implements tenant.CredentialReader: false (the query is
// asked about the user and the tenant only).
func (p *Membership) ReadsCredential() bool { return false }

// IsMember implements tenant.Membership.
func (p *Membership) IsMember(ctx context.Context, pr auth.Principal, tenant string) (bool, error) {
	key := answercache.Key(pr.User, tenant)
	if m, ok := p.cache.Get(key); ok {
		return m, nil
	}
	var member bool
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", p.setting, tenant); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, p.query, pr.User, tenant)
		if err != nil {
			return err
		}
		member = rows.Next()
		rows.Close()
		return rows.Err()
	})
	if err != nil {
		return false, fmt.Errorf("tenant: postgres membership: %w", err)
	}
	p.cache.Put(key, member, p.ttl)
	return member, nil
}

// Close closes the connection pool.
func (p *Membership) Close() error {
	p.pool.Close()
	return nil
}
