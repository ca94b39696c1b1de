// Package outbox relays rows committed to a PostgreSQL outbox table as
// publishes (SPEC §7, docs/outbox.md): an application inserts an event in
// the same transaction as the change it announces, and the relay publishes
// it once the transaction has committed — never a rolled-back row, never a
// committed row lost or published twice, per channel in commit order.
//
// Order: a deferred trigger numbers each row (seq) while its transaction
// commits, under a transaction-scoped advisory lock held until the commit is
// visible, so seq order is commit order and the visible rows are always a
// prefix of it. One relay at a time holds the table's lease (a session
// advisory lock); it reads batches in seq order with FOR UPDATE, publishes
// each row under the idempotency key "outbox:<table>:<oid>:<id>", then
// deletes the batch. A relay killed between publish and delete leaves the
// rows for the next lease holder, whose publish of the same keys publishes
// nothing again.
package outbox

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultTable is the outbox table's default name (SLUICE_OUTBOX_TABLE).
const DefaultTable = "sluice_outbox"

// Defaults of Config.
const (
	DefaultPoll        = time.Second
	DefaultBatch       = 500
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

func (e *Refused) Error() string { return "outbox: row refused: " + e.Reason }

// Row is one outbox row to publish.
type Row struct {
	ID      int64
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
	// Publish publishes one row under key, returning nil once the event is
	// in history (or was already, under that key), a *Refused for a row to
	// dead-letter, any other error to retry the row later. It must be safe
	// for concurrent use.
	Publish func(ctx context.Context, key string, r Row) error
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
	if _, err := pgx.ParseConfig(cfg.URL); err != nil {
		return errors.New("outbox: SLUICE_POSTGRES_URL does not parse as a PostgreSQL URL")
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
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := r.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		r.log.Warn("outbox relay: database session ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

type relay struct {
	cfg Config
	log *slog.Logger
	oid uint32 // the table's, in idempotency keys: a recreated table gets new ones
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
	if err := conn.QueryRow(ctx, "SELECT $1::regclass::oid", r.cfg.Table).Scan(&r.oid); err != nil {
		return fmt.Errorf("outbox table %s not found (run `sluice outbox init`): %w", r.cfg.Table, err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+t); err != nil {
		return err
	}
	leased := false
	for {
		if !leased {
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1), 2)", r.cfg.Table).Scan(&leased); err != nil {
				return err
			}
			if leased {
				r.log.Info("outbox relay: holding the lease", "table", r.cfg.Table)
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
		if retry || n < r.cfg.Batch {
			return false, nil
		}
	}
	return true, nil
}

// batch relays one batch in one transaction: read up to Batch rows in commit
// order, publish them (channels concurrently, each channel's rows in order),
// then delete the published rows and move the refused ones to <table>_dead.
// A channel whose publish fails stops there; its rows stay for the next
// batch. retry reports such a failure.
func (r *relay) batch(ctx context.Context, conn *pgx.Conn) (n int, retry bool, err error) {
	// A batch once read runs to its end even when ctx ends: what was
	// published is then deleted, not published again by the next holder.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	t := pgx.Identifier{r.cfg.Table}.Sanitize()
	tx, err := conn.Begin(bctx)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback(context.Background())
	rows, err := tx.Query(bctx, "SELECT id, channel, event, data::text FROM "+t+
		" WHERE seq IS NOT NULL ORDER BY seq LIMIT $1 FOR UPDATE", r.cfg.Batch)
	if err != nil {
		return 0, false, err
	}
	var batch []Row
	for rows.Next() {
		var row Row
		var data string
		if err := rows.Scan(&row.ID, &row.Channel, &row.Event, &data); err != nil {
			rows.Close()
			return 0, false, err
		}
		row.Data = []byte(data)
		batch = append(batch, row)
	}
	if err := rows.Err(); err != nil {
		return 0, false, err
	}
	if len(batch) == 0 {
		return 0, false, tx.Commit(bctx)
	}
	done, deadIDs, reasons, failed := r.publish(bctx, batch)
	if len(done) > 0 {
		if _, err := tx.Exec(bctx, "DELETE FROM "+t+" WHERE id = ANY($1)", done); err != nil {
			return 0, false, err
		}
	}
	if len(deadIDs) > 0 {
		dead := pgx.Identifier{r.cfg.Table + "_dead"}.Sanitize()
		if _, err := tx.Exec(bctx, `WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)),
			moved AS (DELETE FROM `+t+` o USING r WHERE o.id = r.id RETURNING o.id, o.channel, o.event, o.data, o.created_at, r.reason)
			INSERT INTO `+dead+` (id, channel, event, data, created_at, reason) SELECT * FROM moved ON CONFLICT (id) DO NOTHING`,
			deadIDs, reasons); err != nil {
			return 0, false, err
		}
	}
	if err := tx.Commit(bctx); err != nil {
		return 0, false, err
	}
	if m := r.cfg.Metrics; m != nil {
		if len(done) > 0 {
			m.OutboxRelayed(len(done))
		}
		for _, reason := range reasons {
			code, _, _ := strings.Cut(reason, ":")
			m.OutboxDeadLettered(code)
		}
	}
	for i, id := range deadIDs {
		r.log.Warn("outbox relay: row refused, moved to the dead-letter table", "id", id, "dead", r.cfg.Table+"_dead", "reason", reasons[i])
	}
	if failed != nil {
		r.log.Warn("outbox relay: publishing failed; the rows stay and are tried again", "err", failed, "in", r.cfg.Poll)
		select {
		case <-ctx.Done():
		case <-time.After(r.cfg.Poll):
		}
		return len(batch), true, nil
	}
	return len(batch), false, nil
}

// publish publishes batch: rows grouped by channel, each channel's rows in
// order by one worker, up to Concurrency channels at once. It returns the
// ids published, the ids refused with their reasons, and the first error of
// a channel that stopped.
func (r *relay) publish(ctx context.Context, batch []Row) (done, deadIDs []int64, reasons []string, failed error) {
	var order []string
	byChan := map[string][]Row{}
	for _, row := range batch {
		if _, ok := byChan[row.Channel]; !ok {
			order = append(order, row.Channel)
		}
		byChan[row.Channel] = append(byChan[row.Channel], row)
	}
	var mu sync.Mutex
	work := make(chan []Row)
	var wg sync.WaitGroup
	for w := 0; w < min(r.cfg.Concurrency, len(order)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rows := range work {
				for _, row := range rows {
					err := r.cfg.Publish(ctx, r.key(row.ID), row)
					var ref *Refused
					mu.Lock()
					switch {
					case err == nil:
						done = append(done, row.ID)
					case errors.As(err, &ref):
						deadIDs = append(deadIDs, row.ID)
						reasons = append(reasons, ref.Reason)
					default:
						if failed == nil {
							failed = err
						}
					}
					mu.Unlock()
					if err != nil && ref == nil {
						break // the channel's later rows wait: order
					}
				}
			}
		}()
	}
	for _, ch := range order {
		work <- byChan[ch]
	}
	close(work)
	wg.Wait()
	return done, deadIDs, reasons, failed
}

// key is a row's idempotency key: the table's name and oid and the row's id.
func (r *relay) key(id int64) string {
	return "outbox:" + r.cfg.Table + ":" + strconv.FormatUint(uint64(r.oid), 10) + ":" + strconv.FormatInt(id, 10)
}
