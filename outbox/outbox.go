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

// group is one publish: consecutive rows (in commit order) of one channel,
// under one idempotency key, recorded in <table>_inflight before it is
// published so that whoever publishes it again publishes the same rows
// under the same key. A group the gateway refused (a poison row in it) is
// published row by row instead, each row under its own key (perRow).
type group struct {
	key    string
	first  int64 // seq of its first row: groups are published in this order
	ids    []int64
	rows   []Row
	perRow bool
}

// maxGroup bounds a group by POST /publish's batch limit.
const maxGroup = 1000

// batch relays one batch: the groups an earlier attempt recorded and did
// not finish, if any, else up to Batch new rows read in commit order and
// recorded as groups. Groups of different channels are published
// concurrently, each channel's in order; a channel stops at its first
// failure. Then one transaction deletes what was published, moves refused
// rows to <table>_dead and forgets the finished groups. retry reports a
// failure (its groups stay recorded).
func (r *relay) batch(ctx context.Context, conn *pgx.Conn) (n int, retry error, err error) {
	// A batch once read runs to its end even when ctx ends: what was
	// published is then deleted, not published again by the next holder.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	start := time.Now()
	var groups []*group
	if r.dirty {
		if groups, err = r.pending(bctx, conn); err != nil {
			return 0, nil, err
		}
		r.dirty = len(groups) > 0
	}
	if len(groups) == 0 {
		if groups, err = r.claim(bctx, conn); err != nil || len(groups) == 0 {
			return 0, nil, err
		}
	}
	for _, g := range groups {
		n += len(g.rows)
	}
	claimed := time.Now()
	res := r.publish(bctx, groups)
	published := time.Now()
	t := pgx.Identifier{r.cfg.Table}.Sanitize()
	inflight := pgx.Identifier{r.cfg.Table + "_inflight"}.Sanitize()
	// One round trip: the statements are pipelined in one transaction.
	// Not waiting for its commit to be flushed is safe: if PostgreSQL loses
	// it in a crash, the rows and their groups' records come back and are
	// published again under the same keys, which publishes nothing again.
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	if len(res.done) > 0 {
		b.Queue("DELETE FROM "+t+" WHERE id = ANY($1)", res.done)
	}
	if len(res.deadIDs) > 0 {
		dead := pgx.Identifier{r.cfg.Table + "_dead"}.Sanitize()
		b.Queue(`WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)),
			moved AS (DELETE FROM `+t+` o USING r WHERE o.id = r.id RETURNING o.id, o.channel, o.event, o.data, o.created_at, r.reason)
			INSERT INTO `+dead+` (id, channel, event, data, created_at, reason) SELECT * FROM moved ON CONFLICT (id) DO NOTHING`,
			res.deadIDs, res.reasons)
	}
	if len(res.finished) > 0 {
		b.Queue("DELETE FROM "+inflight+" WHERE key = ANY($1)", res.finished)
	}
	if len(res.refused) > 0 {
		b.Queue("UPDATE "+inflight+" SET per_row = true WHERE key = ANY($1)", res.refused)
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(bctx, &b).Close(); err != nil {
		return 0, nil, err
	}
	if res.failed != nil || len(res.refused) > 0 {
		r.dirty = true // groups left recorded: publish them first
	}
	if res.failed != nil {
		for _, g := range groups {
			for _, row := range g.rows {
				r.alone = max(r.alone, row.Seq)
			}
		}
	}
	r.log.Debug("outbox relay: batch", "rows", n, "groups", len(groups),
		"read", claimed.Sub(start), "publish", published.Sub(claimed), "delete", time.Since(published))
	if m := r.cfg.Metrics; m != nil {
		if len(res.done) > 0 {
			m.OutboxRelayed(len(res.done))
		}
		for _, reason := range res.reasons {
			code, _, _ := strings.Cut(reason, ":")
			m.OutboxDeadLettered(code)
		}
	}
	for i, id := range res.deadIDs {
		r.log.Warn("outbox relay: row refused, moved to the dead-letter table", "id", id, "dead", r.cfg.Table+"_dead", "reason", res.reasons[i])
	}
	if len(res.refused) > 0 {
		return n, nil, nil // at once: the refused groups again, row by row
	}
	return n, res.failed, nil
}

// pending returns the groups recorded and not finished, in commit order,
// with the rows of theirs that are still in the outbox.
func (r *relay) pending(ctx context.Context, conn *pgx.Conn) ([]*group, error) {
	inflight := pgx.Identifier{r.cfg.Table + "_inflight"}.Sanitize()
	rows, err := conn.Query(ctx, "SELECT key, first_seq, ids, per_row FROM "+inflight+" ORDER BY first_seq")
	if err != nil {
		return nil, err
	}
	var groups []*group
	byID := map[int64]*group{}
	var all []int64
	for rows.Next() {
		g := &group{}
		if err := rows.Scan(&g.key, &g.first, &g.ids, &g.perRow); err != nil {
			rows.Close()
			return nil, err
		}
		for _, id := range g.ids {
			byID[id] = g
		}
		all = append(all, g.ids...)
		groups = append(groups, g)
	}
	if err := rows.Err(); err != nil || len(groups) == 0 {
		return nil, err
	}
	got, err := r.read(ctx, conn, "SELECT id, seq, channel, event, data::text FROM "+pgx.Identifier{r.cfg.Table}.Sanitize()+
		" WHERE id = ANY($1) ORDER BY seq", all)
	if err != nil {
		return nil, err
	}
	for _, row := range got {
		g := byID[row.ID]
		g.rows = append(g.rows, row)
	}
	return groups, nil
}

// claim reads up to Batch new rows in commit order and forms their groups.
// A group of several rows is recorded before it is published (one durable
// commit). A single row needs no record: it is published under its own key
// ("outbox:<table>:<oid>:<seq>"), which any later attempt uses again
// provided it too publishes that row alone — so every row up to r.alone
// is published alone: an earlier holder, or an earlier failed attempt, may
// have published any row not recorded under its own key (a batch of the
// groups an earlier holder recorded says nothing of its lone rows).
func (r *relay) claim(ctx context.Context, conn *pgx.Conn) ([]*group, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	rows, err := tx.Query(ctx, "SELECT id, seq, channel, event, data::text FROM "+pgx.Identifier{r.cfg.Table}.Sanitize()+
		" WHERE seq IS NOT NULL ORDER BY seq LIMIT $1 FOR UPDATE", r.cfg.Batch)
	if err != nil {
		return nil, err
	}
	var groups []*group
	open := map[string]*group{}
	for rows.Next() {
		var row Row
		var data string
		if err := rows.Scan(&row.ID, &row.Seq, &row.Channel, &row.Event, &data); err != nil {
			rows.Close()
			return nil, err
		}
		row.Data = []byte(data)
		g := open[row.Channel]
		if g == nil || len(g.rows) == maxGroup || row.Seq <= r.alone || g.first <= r.alone {
			g = &group{first: row.Seq}
			open[row.Channel] = g
			groups = append(groups, g)
		}
		g.rows = append(g.rows, row)
		g.ids = append(g.ids, row.ID)
	}
	if err := rows.Err(); err != nil || len(groups) == 0 {
		return nil, err
	}
	inflight := pgx.Identifier{r.cfg.Table + "_inflight"}.Sanitize()
	var b pgx.Batch
	for _, g := range groups {
		if len(g.ids) == 1 {
			g.key, g.perRow = r.key(g.rows[0].Seq), true // alone: its own key, no record
			continue
		}
		g.key = r.key(g.first) + "+" + strconv.Itoa(len(g.ids))
		b.Queue("INSERT INTO "+inflight+" (key, first_seq, ids) VALUES ($1, $2, $3)", g.key, g.first, g.ids)
	}
	if b.Len() == 0 {
		return groups, tx.Commit(ctx) // nothing written: no flush to wait for
	}
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return nil, err
	}
	return groups, tx.Commit(ctx)
}

func (r *relay) read(ctx context.Context, conn *pgx.Conn, q string, args ...any) ([]Row, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []Row
	for rows.Next() {
		var row Row
		var data string
		if err := rows.Scan(&row.ID, &row.Seq, &row.Channel, &row.Event, &data); err != nil {
			rows.Close()
			return nil, err
		}
		row.Data = []byte(data)
		out = append(out, row)
	}
	return out, rows.Err()
}

// result is what publishing a batch's groups did.
type result struct {
	done     []int64  // rows published
	deadIDs  []int64  // rows refused, with reasons
	reasons  []string //
	finished []string // groups with nothing left to publish
	refused  []string // groups to publish again row by row
	failed   error    // the first failure that stopped a channel
}

// publish publishes groups: each channel's in order by one worker, up to
// Concurrency channels at once.
func (r *relay) publish(ctx context.Context, groups []*group) *result {
	var order []string
	byChan := map[string][]*group{}
	for _, g := range groups {
		ch := ""
		if len(g.rows) > 0 {
			ch = g.rows[0].Channel
		}
		if _, ok := byChan[ch]; !ok {
			order = append(order, ch)
		}
		byChan[ch] = append(byChan[ch], g)
	}
	res := &result{}
	var mu sync.Mutex
	work := make(chan []*group)
	var wg sync.WaitGroup
	for w := 0; w < min(r.cfg.Concurrency, len(order)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for gs := range work {
				for _, g := range gs {
					if !r.publishGroup(ctx, g, res, &mu) {
						break // the channel's later groups wait: order
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
	return res
}

// publishGroup publishes g and records the outcome in res; it reports
// whether the channel's next group may follow.
func (r *relay) publishGroup(ctx context.Context, g *group, res *result, mu *sync.Mutex) bool {
	if len(g.rows) == 0 {
		mu.Lock()
		res.finished = append(res.finished, g.key)
		mu.Unlock()
		return true
	}
	if !g.perRow {
		err := r.cfg.Publish(ctx, g.key, g.rows)
		var ref *Refused
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			for _, row := range g.rows {
				res.done = append(res.done, row.ID)
			}
			res.finished = append(res.finished, g.key)
			return true
		case errors.As(err, &ref) && len(g.rows) == 1:
			res.deadIDs = append(res.deadIDs, g.rows[0].ID)
			res.reasons = append(res.reasons, ref.Reason)
			res.finished = append(res.finished, g.key)
			return true
		case errors.As(err, &ref):
			res.refused = append(res.refused, g.key)
			return false
		default:
			if res.failed == nil {
				res.failed = err
			}
			return false
		}
	}
	for _, row := range g.rows {
		err := r.cfg.Publish(ctx, r.key(row.Seq), []Row{row})
		var ref *Refused
		mu.Lock()
		switch {
		case err == nil:
			res.done = append(res.done, row.ID)
		case errors.As(err, &ref):
			res.deadIDs = append(res.deadIDs, row.ID)
			res.reasons = append(res.reasons, ref.Reason)
		default:
			if res.failed == nil {
				res.failed = err
			}
			mu.Unlock()
			return false
		}
		mu.Unlock()
	}
	mu.Lock()
	res.finished = append(res.finished, g.key)
	mu.Unlock()
	return true
}

// key is a row's idempotency key: the table's name and oid and the row's
// seq (a group's: its first row's, and "+<rows>"). Seq rather than id: the
// id sequence restarts with TRUNCATE … RESTART IDENTITY, and a new row
// under an old row's key would be taken for published.
func (r *relay) key(seq int64) string {
	return "outbox:" + r.cfg.Table + ":" + strconv.FormatUint(uint64(r.oid), 10) + ":" + strconv.FormatInt(seq, 10)
}
