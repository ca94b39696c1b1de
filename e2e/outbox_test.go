package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicehq/sluice/internal/testutil"
)

// pgBase returns SLUICE_TEST_POSTGRES_URL or skips.
func pgBase(t *testing.T) string {
	t.Helper()
	u := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("set SLUICE_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the outbox tests")
	}
	return u
}

// outboxDB creates a schema of the test's own in the database of base
// (dropped at cleanup), creates the outbox in it with `sluice outbox init`
// and returns a URL whose search_path is that schema.
func outboxDB(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	schema := "outbox_e2e_" + strings.ToLower(random())
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		admin.Close(context.Background())
	})
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	cmd := exec.Command(testutil.SluiceBinary(t), "outbox", "init")
	cmd.Env = append(os.Environ(), "SLUICE_POSTGRES_URL="+u.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sluice outbox init: %v\n%s", err, out)
	}
	return u.String()
}

// outboxWriter commits rows to the outbox, one transaction after another,
// on channels chans: each transaction inserts 1 to 3 rows of one channel
// numbered by that channel's counter; every fifth transaction rolls back
// (its rows say so). It reconnects after any fault, and records which
// numbers surely committed and which may have (COMMIT failed without
// saying).
type outboxWriter struct {
	t     *testing.T
	url   string
	chans []string

	mu        sync.Mutex
	next      []int          // per channel: the next number
	committed []map[int]bool // per channel: surely committed
	maybe     []map[int]bool // per channel: COMMIT's outcome unknown
	txs, rbs  int            // committed and rolled-back transactions
	stop      chan struct{}
	done      chan struct{}
	pause     time.Duration
	errs      map[string]int
}

func startOutboxWriter(t *testing.T, u string, chans []string, pause time.Duration) *outboxWriter {
	w := &outboxWriter{t: t, url: u, chans: chans, pause: pause, next: make([]int, len(chans)),
		stop: make(chan struct{}), done: make(chan struct{}), errs: map[string]int{}}
	for range chans {
		w.committed = append(w.committed, map[int]bool{})
		w.maybe = append(w.maybe, map[int]bool{})
	}
	go w.run()
	t.Cleanup(w.halt)
	return w
}

func (w *outboxWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *outboxWriter) count() (txs, rbs int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.txs, w.rbs
}

func (w *outboxWriter) run() {
	defer close(w.done)
	ctx := context.Background()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(w.pause):
		}
		if conn == nil || conn.IsClosed() {
			c, err := pgx.Connect(ctx, w.url)
			if err != nil {
				w.note("connect")
				time.Sleep(50 * time.Millisecond)
				continue
			}
			conn = c
		}
		c := i % len(w.chans)
		rollback := i%5 == 4
		w.mu.Lock()
		first := w.next[c]
		w.mu.Unlock()
		n := 1 + i%3
		tx, err := conn.Begin(ctx)
		if err != nil {
			w.note("begin")
			continue
		}
		ok := true
		for k := 0; k < n; k++ {
			data := fmt.Sprintf(`{"c": %d, "n": %d, "rolledback": %t}`, c, first+k, rollback)
			if _, err := tx.Exec(ctx, "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, 'doc.updated', $2)", w.chans[c], data); err != nil {
				ok = false
				break
			}
		}
		if !ok || rollback {
			_ = tx.Rollback(ctx)
			if !ok {
				w.note("insert")
			} else {
				w.mu.Lock()
				w.rbs++
				w.mu.Unlock()
			}
			continue
		}
		err = tx.Commit(ctx)
		w.mu.Lock()
		switch {
		case err == nil:
			for k := 0; k < n; k++ {
				w.committed[c][first+k] = true
			}
			w.txs++
		default:
			// The COMMIT may or may not have happened.
			for k := 0; k < n; k++ {
				w.maybe[c][first+k] = true
			}
			w.errs["commit"]++
		}
		w.next[c] = first + n
		w.mu.Unlock()
	}
}

func (w *outboxWriter) note(what string) {
	w.mu.Lock()
	w.errs[what]++
	w.mu.Unlock()
}

// outboxReader collects what a stream of every channel of a writer
// receives.
type outboxReader struct {
	got  [][]int
	bad  []string
	seen int
}

// collect reads s until want events arrived and then quiet passed without
// another, or fails after d.
func collectOutbox(t *testing.T, s *sseStream, nchans int, want func() int, d, quiet time.Duration) *outboxReader {
	t.Helper()
	r := &outboxReader{got: make([][]int, nchans)}
	deadline := time.Now().Add(d)
	for {
		wait := quiet
		if r.seen < want() {
			wait = time.Until(deadline)
		}
		b, ok := s.tryNext(wait)
		if !ok {
			if r.seen >= want() {
				return r
			}
			t.Fatalf("%s: %d events of %d within %v (ended: %v)", s.name, r.seen, want(), d, s.ended())
		}
		if b.KeepAlive() || b.Event == "stream-open" {
			continue
		}
		if b.Event != "doc.updated" {
			r.bad = append(r.bad, b.String())
			continue
		}
		var v struct {
			C, N       int
			RolledBack bool `json:"rolledback"`
		}
		if err := json.Unmarshal([]byte(b.Data), &v); err != nil || v.C < 0 || v.C >= nchans {
			r.bad = append(r.bad, b.String())
			continue
		}
		if v.RolledBack {
			r.bad = append(r.bad, "a rolled-back row: "+b.Data)
		}
		r.got[v.C] = append(r.got[v.C], v.N)
		r.seen++
	}
}

// check fails the test unless every surely committed number of each
// channel arrived exactly once, in order, and nothing else did but numbers
// whose COMMIT's outcome was unknown (at most once, in order).
func (w *outboxWriter) check(t *testing.T, r *outboxReader) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range r.bad {
		t.Errorf("unexpected: %s", b)
	}
	for c := range w.chans {
		last := -1
		seen := map[int]bool{}
		for _, n := range r.got[c] {
			switch {
			case seen[n]:
				t.Errorf("channel %d: %d delivered twice", c, n)
			case n <= last:
				t.Errorf("channel %d: %d after %d: out of commit order", c, n, last)
			case !w.committed[c][n] && !w.maybe[c][n]:
				t.Errorf("channel %d: %d delivered but never committed", c, n)
			}
			seen[n], last = true, max(last, n)
		}
		for n := range w.committed[c] {
			if !seen[n] {
				t.Errorf("channel %d: committed %d never delivered", c, n)
			}
		}
	}
}

func (w *outboxWriter) sure() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.committed {
		n += len(m)
	}
	return n
}

// TestOutboxEndToEnd: through the built binary, while a stream is open,
// committed transactions reach it in commit order per channel and exactly
// once, rolled-back ones never; a poison row is moved to the dead-letter
// table and the rows behind it flow; the outbox ends empty.
func TestOutboxEndToEnd(t *testing.T) {
	u := outboxDB(t, pgBase(t))
	p := startSluice(t, "sluice", map[string]string{"SLUICE_OUTBOX": "postgres", "SLUICE_POSTGRES_URL": u, "SLUICE_OUTBOX_POLL": "5s"})
	chans := []string{newChannel("docs"), newChannel("docs"), newChannel("scans")}
	s := p.open("reader", "", chans...)
	s.expectOpen()
	w := startOutboxWriter(t, u, chans, time.Millisecond)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	time.Sleep(300 * time.Millisecond)
	for _, poison := range [][2]string{
		{chans[0], "Bad Event"},           // not resource.verb
		{"no-tenant-here", "doc.updated"}, // not a channel name
		{chans[1], "stream-open.x"},       // reserved
	} {
		if _, err := conn.Exec(ctx, "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, $2, '{}')", poison[0], poison[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, 'doc.updated', to_jsonb(repeat('x', 70000)))", chans[2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	w.halt()
	txs, rbs := w.count()
	t.Logf("%d transactions committed, %d rolled back, %d rows committed", txs, rbs, w.sure())
	r := collectOutbox(t, s, len(chans), w.sure, 20*time.Second, time.Second)
	w.check(t, r)
	var dead int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM sluice_outbox_dead").Scan(&dead); err != nil || dead != 4 {
		t.Errorf("dead letters: %d (%v), want 4", dead, err)
	}
	rows, _ := conn.Query(ctx, "SELECT event, reason FROM sluice_outbox_dead ORDER BY id")
	for rows.Next() {
		var ev, reason string
		_ = rows.Scan(&ev, &reason)
		t.Logf("dead letter %q: %s", ev, reason)
	}
	rows.Close()
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM sluice_outbox").Scan(&left); err != nil || left != 0 {
		t.Errorf("%d rows left in the outbox (%v)", left, err)
	}
	resp, err := apiClient.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("sluice_outbox_relayed_total %d", w.sure())
	if m := string(body); !strings.Contains(m, `sluice_outbox_dead_letters_total{code="invalid_event"} 2`) ||
		!strings.Contains(m, `sluice_outbox_dead_letters_total{code="event_too_large"} 1`) || !strings.Contains(m, want) {
		t.Errorf("metrics lack the outbox counts (want %s):\n%s", want, grepLines(m, "outbox_relayed"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestOutboxTwoInstancesKill: two instances relay one outbox at once (a
// shared Redis broker); the lease holder is SIGKILLed while rows flow; the
// other takes over; a stream on the survivor gets every committed row
// exactly once, in per-channel commit order, and no rolled-back row.
func TestOutboxTwoInstancesKill(t *testing.T) {
	u := outboxDB(t, pgBase(t))
	d := newDeployment(t, redisURL(t), map[string]string{"SLUICE_OUTBOX": "postgres", "SLUICE_POSTGRES_URL": u, "SLUICE_OUTBOX_POLL": "200ms", "SLUICE_OUTBOX_BATCH": "50"})
	a := d.start("a")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.logs.String(), "holding the lease") {
		if time.Now().After(deadline) {
			t.Fatalf("a never took the lease:\n%s", a.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b := d.start("b")
	chans := []string{newChannel("docs"), newChannel("docs"), newChannel("docs"), newChannel("scans")}
	s := b.open("reader", "", chans...)
	s.expectOpen()
	w := startOutboxWriter(t, u, chans, 0)
	time.Sleep(500 * time.Millisecond)
	// SIGKILL a mid-batch: while groups of rows it has recorded as being
	// published are in sluice_outbox_inflight (recorded before publishing,
	// deleted with the rows after).
	mon, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(context.Background())
	var pid, inflight int
	deadline = time.Now().Add(10 * time.Second)
	for {
		if err := mon.QueryRow(context.Background(), "SELECT count(*) FROM sluice_outbox_inflight").Scan(&inflight); err != nil {
			t.Fatal(err)
		}
		if inflight > 0 {
			a.kill()
			pid = a.cmd.Process.Pid
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never saw a's relay mid-batch")
		}
	}
	t.Logf("killed a (pid %d) mid-batch (%d groups in flight) after %d transactions", pid, inflight, func() int { n, _ := w.count(); return n }())
	time.Sleep(1500 * time.Millisecond)
	w.halt()
	if !strings.Contains(b.logs.String(), "holding the lease") {
		t.Errorf("b did not take over the lease:\n%s", b.logs.String())
	}
	txs, rbs := w.count()
	t.Logf("%d transactions committed, %d rolled back, %d rows committed", txs, rbs, w.sure())
	r := collectOutbox(t, s, len(chans), w.sure, 30*time.Second, 2*time.Second)
	w.check(t, r)
}

// TestOutboxPostgresRestart: PostgreSQL (one of the test's own) crashes and
// restarts while rows are written; the relay recovers by itself and every
// committed row is delivered once, in order.
func TestOutboxPostgresRestart(t *testing.T) {
	pg := startPostgres(t)
	u := outboxDB(t, pg.url)
	p := startSluice(t, "sluice", map[string]string{"SLUICE_OUTBOX": "postgres", "SLUICE_POSTGRES_URL": u, "SLUICE_OUTBOX_POLL": "200ms"})
	chans := []string{newChannel("docs"), newChannel("scans")}
	s := p.open("reader", "", chans...)
	s.expectOpen()
	w := startOutboxWriter(t, u, chans, time.Millisecond)
	time.Sleep(time.Second)
	pg.crash()
	time.Sleep(500 * time.Millisecond)
	pg.start()
	time.Sleep(1500 * time.Millisecond)
	w.halt()
	txs, rbs := w.count()
	t.Logf("%d transactions committed, %d rolled back, %d rows committed; writer faults %v", txs, rbs, w.sure(), w.errs)
	r := collectOutbox(t, s, len(chans), w.sure, 30*time.Second, 2*time.Second)
	w.check(t, r)
	if !strings.Contains(p.logs.String(), "reconnecting") {
		t.Errorf("the relay never noticed the restart:\n%s", p.logs.String())
	}
}
