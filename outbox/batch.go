package outbox

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

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
		row, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
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

// scanRow reads the row rows is at, selected as id, seq, channel, event,
// data.
func scanRow(rows pgx.Rows) (Row, error) {
	var row Row
	var data string
	err := rows.Scan(&row.ID, &row.Seq, &row.Channel, &row.Event, &data)
	row.Data = []byte(data)
	return row, err
}

func (r *relay) read(ctx context.Context, conn *pgx.Conn, q string, args ...any) ([]Row, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []Row
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
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
