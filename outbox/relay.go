package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

type relay struct {
	cfg Config
	log *slog.Logger
	oid uint32 // the table's, in idempotency keys: a recreated table gets new ones
	// dirty says <table>_inflight may hold groups not finished: true when
	// a session starts (an earlier holder may have died mid-batch) and
	// after a failure.
	dirty bool
	// alone is the last seq of the rows that may have been published
	// under their own keys, by an earlier holder or an earlier failed
	// attempt: such rows must be published alone again (under the same
	// keys), never grouped. Set when the lease is taken (the outbox's
	// highest seq: a dead holder can only have published rows that were
	// committed before it died) and raised after a failure (the failed
	// batch's highest seq). Only later rows are grouped.
	alone int64
}

// session runs one database connection: take the lease, then relay batches
// whenever notified or polled, until the connection fails or ctx is done.
func (r *relay) session(ctx context.Context) error {
	pc, err := pgx.ParseConfig(r.cfg.URL)
	if err != nil {
		return err
	}
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = ApplicationName
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, pc)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	t := pgx.Identifier{r.cfg.Table}.Sanitize()
	if err := conn.QueryRow(ctx, "SELECT $1::regclass::oid, $2::regclass::oid", r.cfg.Table, r.cfg.Table+"_inflight").Scan(&r.oid, new(uint32)); err != nil {
		return fmt.Errorf("outbox table %s or %s_inflight not found (run `sluice outbox init`): %w", r.cfg.Table, r.cfg.Table, err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+t); err != nil {
		return err
	}
	var hidden bool
	if err := conn.QueryRow(ctx, `SELECT c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls)
			AND (c.relowner <> r.oid OR c.relforcerowsecurity)
			AND NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = n.nspname AND p.tablename = c.relname
				AND p.cmd IN ('ALL', 'SELECT') AND (r.rolname = ANY(p.roles) OR 'public' = ANY(p.roles)))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, pg_roles r
		WHERE c.oid = $1::regclass AND r.rolname = current_user`, r.cfg.Table).Scan(&hidden); err == nil && hidden {
		r.log.Error("outbox relay: row-level security hides the outbox's rows from this role: nothing will be relayed; "+
			"give the relay's role a policy FOR ALL (examples/outbox/rls.sql) or BYPASSRLS", "table", r.cfg.Table)
	}
	var autovacuum string
	if conn.QueryRow(ctx, "SHOW autovacuum").Scan(&autovacuum) == nil && autovacuum == "off" {
		r.log.Warn("outbox relay: autovacuum is off: every relayed row leaves dead tuples that slow the relay down until the outbox is vacuumed; VACUUM it regularly", "table", r.cfg.Table)
	}
	leased := false
	r.dirty = true
	var checked time.Time
	for {
		if !leased {
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext('sluice outbox lease'), hashtext($1::regclass::oid::text))", r.cfg.Table).Scan(&leased); err != nil {
				return err
			}
			if leased {
				if err := conn.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM "+t).Scan(&r.alone); err != nil {
					return err
				}
				r.log.Info("outbox relay: holding the lease", "table", r.cfg.Table)
			}
		}
		if leased && time.Since(checked) > time.Minute {
			checked = time.Now()
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+t+" WHERE seq IS NULL").Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				r.log.Error("outbox relay: committed rows without a commit number are never relayed: the numbering trigger could not update them "+
					"(row-level security without a policy for the table's owner? trigger disabled?); see docs/outbox.md", "rows", n, "table", r.cfg.Table)
			}
		}
		if leased {
			full, err := r.drain(ctx, conn)
			if err != nil {
				return err
			}
			if full {
				continue
			}
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.Poll)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && wctx.Err() == nil {
			return err // the connection failed, not the wait's timeout
		}
		if conn.IsClosed() {
			return errors.New("connection closed")
		}
	}
}

// drain relays batches until one is not full (reports true when the last
// was full, i.e. more may be waiting) or a publish fails (then it backs off
// and reports false, so that the rows are tried again after Poll).
func (r *relay) drain(ctx context.Context, conn *pgx.Conn) (bool, error) {
	for i := 0; i < 100; i++ {
		n, retry, err := r.batch(ctx, conn)
		if err != nil {
			return false, err
		}
		if retry != nil {
			r.log.Warn("outbox relay: publishing failed; the rows stay and are tried again", "err", retry, "in", r.cfg.Poll)
			select {
			case <-ctx.Done():
			case <-time.After(r.cfg.Poll):
			}
			return false, nil
		}
		if n < r.cfg.Batch {
			return false, nil
		}
	}
	return true, nil
}
