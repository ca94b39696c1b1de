// Package outbox relays rows committed to a PostgreSQL outbox table as
// publishes (protocol.md §7, docs/outbox.md): an application inserts an event in
// the same transaction as the change it announces, and the relay publishes
// it once the transaction has committed — never a rolled-back row, never a
// committed row lost or published twice, per channel in commit order.
//
// Order: a deferred trigger numbers each row (seq) while its transaction
// commits, under a transaction-scoped advisory lock held until the commit is
// visible, so seq order is commit order and the visible rows are always a
// prefix of it. One relay at a time holds the table's lease (a session
// advisory lock); it reads batches in seq order with FOR UPDATE and cuts
// each into groups (one channel's consecutive rows). A group of several
// rows is recorded in <table>_inflight, then published as one batch under
// the idempotency key "outbox:<table>:<oid>:<first seq>+<rows>"; a single
// row is published under its own key "outbox:<table>:<oid>:<seq>" without a
// record. Then the rows and records are deleted. A relay killed between
// publish and delete leaves the records for the next lease holder, which
// publishes the same rows under the same keys first, and every other row
// committed before it took the lease alone under its own key: the broker
// publishes nothing again. A group with a row that can never be published
// is published row by row instead, the bad rows moved to <table>_dead.
package outbox

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/internal/backoff"
)

// DefaultTable is the outbox table's default name (SLUICE_OUTBOX_TABLE).
const DefaultTable = "sluice_outbox"

// Defaults of Config.
const (
	DefaultPoll        = time.Second
	DefaultBatch       = 2000
	DefaultConcurrency = 16
)

// ApplicationName is the relay's application_name in pg_stat_activity,
// unless the URL sets one.
const ApplicationName = "sluice outbox relay"

//go:embed migration.sql
var migration string

// tableName is what SLUICE_OUTBOX_TABLE may be: a plain lower-case SQL
// identifier (the schema comes from the connection's search_path), short
// enough that "<table>_dead" and "<table>_seq_idx" fit in 63 bytes.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// CheckTable reports whether name can be an outbox table's name.
func CheckTable(name string) error {
	if !tableName.MatchString(name) {
		return fmt.Errorf("outbox: table %q must be a lower-case SQL identifier of at most 48 characters (letters, digits, _; the schema comes from search_path)", name)
	}
	return nil
}

// CheckURL reports whether url can be parsed as a PostgreSQL connection
// string, without quoting it (it may hold a password).
func CheckURL(url string) error {
	if _, err := pgx.ParseConfig(url); err != nil {
		return errors.New("not a PostgreSQL URL such as postgres://sluice_relay@db:5432/app?sslmode=verify-full")
	}
	return nil
}

// SQL returns the migration that creates the outbox table named table, its
// dead-letter table <table>_dead, its commit-order sequence and trigger.
func SQL(table string) (string, error) {
	if err := CheckTable(table); err != nil {
		return "", err
	}
	return strings.ReplaceAll(migration, DefaultTable, table), nil
}

// Init creates (or completes) the outbox of table in the database at url.
// It is idempotent.
func Init(ctx context.Context, url, table string) error {
	q, err := SQL(table)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("outbox: connecting: %w", err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	// Two inits at once would race on CREATE … IF NOT EXISTS.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1), 3)", table); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, q); err != nil {
		return fmt.Errorf("outbox: creating %s: %w", table, err)
	}
	return tx.Commit(ctx)
}

// Refused is the error a Publish function returns for a row that can never
// be published (invalid like a refused POST /publish): the relay moves the
// row to the dead-letter table with Reason instead of retrying it.
type Refused struct {
	Reason string // e.g. "invalid-event: event type must look like resource.verb"
}

// Error says that the row was refused, and why.
func (e *Refused) Error() string { return "outbox: row refused: " + e.Reason }

// Row is one outbox row to publish.
type Row struct {
	ID      int64
	Seq     int64 // commit order; names the row in idempotency keys
	Channel string
	Event   string
	Data    []byte // JSON, as PostgreSQL's jsonb prints it
}

// Recorder receives the relay's counts. Implementations must be safe for
// concurrent use. metrics/prom's Recorder implements it.
type Recorder interface {
	// OutboxRelayed counts rows published (or found already published).
	OutboxRelayed(n int)
	// OutboxDeadLettered counts a row moved to the dead-letter table, by
	// the problem code of its refusal.
	OutboxDeadLettered(code string)
}

// Config configures a relay.
type Config struct {
	// URL is the PostgreSQL connection string (SLUICE_POSTGRES_URL). The
	// role needs what docs/outbox.md lists.
	URL string
	// Table is the outbox table (DefaultTable when empty).
	Table string
	// Poll is the polling fallback: how long the relay waits for a
	// notification before it looks anyway, and how often an instance
	// without the lease tries to take it. Default DefaultPoll.
	Poll time.Duration
	// Batch is the most rows read per transaction. Default DefaultBatch.
	Batch int
	// Concurrency is how many channels of a batch are published at once
	// (rows of one channel are published one after the other). Default
	// DefaultConcurrency.
	Concurrency int
	// Publish publishes rows (consecutive rows of one channel, in order) as
	// one batch under key, all or nothing, returning nil once the events
	// are in history (or were already, under that key), a *Refused when a
	// row can never be published (for a single row: it is dead-lettered;
	// for several: they are published again one by one), any other error
	// to retry the same rows under the same key later. It must be safe for
	// concurrent use.
	Publish func(ctx context.Context, key string, rows []Row) error
	// Logger receives what the relay does (slog.Default() when nil).
	Logger *slog.Logger
	// Metrics receives counts (none when nil).
	Metrics Recorder
}

// Run relays until ctx is done, reconnecting by itself after any database
// fault. It returns ctx's error, or at once a configuration error.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if err := CheckTable(cfg.Table); err != nil {
		return err
	}
	if cfg.URL == "" || cfg.Publish == nil {
		return errors.New("outbox: Run needs a URL and a Publish function")
	}
	if err := CheckURL(cfg.URL); err != nil {
		return fmt.Errorf("outbox: SLUICE_POSTGRES_URL: %w", err)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &relay{cfg: cfg, log: cfg.Logger.With("outbox", cfg.Table)}
	bo := backoff.Backoff{First: 100 * time.Millisecond, Longest: 2 * time.Second, Jitter: backoff.None}
	for {
		start := time.Now()
		err := r.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 10*time.Second {
			bo.Reset()
		}
		wait := bo.Next()
		r.log.Warn("outbox relay: database session ended; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
