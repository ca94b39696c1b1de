package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluicehq/sluice/internal/testutil"
)

// testDB returns the URL of a schema of the test's own in the PostgreSQL of
// SLUICE_TEST_POSTGRES_URL (skipping without it), with the outbox created
// in it; the schema is dropped at cleanup.
func testDB(t *testing.T) string {
	t.Helper()
	base := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("set SLUICE_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the outbox tests")
	}
	schema := "outbox_test_" + randomHex(6)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("SLUICE_TEST_POSTGRES_URL: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	if err := Init(ctx, u.String(), DefaultTable); err != nil {
		t.Fatal(err)
	}
	if err := Init(ctx, u.String(), DefaultTable); err != nil {
		t.Fatalf("a second init: %v", err)
	}
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// sink records what a relay publishes, refusing like POST /publish would
// the rows whose event is not resource.verb, and failing while fail is set.
type sink struct {
	mu    sync.Mutex
	keys  map[string]bool
	byCh  map[string][]string // channel → data, in publish order
	total int
	dups  int
	calls int
	fail  bool
}

func newSink() *sink { return &sink{keys: map[string]bool{}, byCh: map[string][]string{}} }

func (s *sink) publish(_ context.Context, key string, rows []Row) error {
	for _, r := range rows {
		if !strings.Contains(r.Event, ".") {
			return &Refused{Reason: "invalid_event: event type must look like resource.verb"}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail {
		return errors.New("broker unavailable")
	}
	if s.keys[key] {
		s.dups++ // an idempotent broker publishes nothing again
		return nil
	}
	s.keys[key] = true
	for _, r := range rows {
		s.byCh[r.Channel] = append(s.byCh[r.Channel], string(r.Data))
		s.total++
	}
	return nil
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func startRelay(t *testing.T, u string, s *sink, poll time.Duration) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{URL: u, Poll: poll, Batch: 50, Publish: s.publish})
	}()
	stop := func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-ctx.Done():
		default:
			stop()
		}
	})
	var once sync.Once
	return func() { once.Do(stop) }
}

func insert(t *testing.T, c *pgx.Conn, commit bool, rows ...[3]string) {
	t.Helper()
	ctx := context.Background()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := tx.Exec(ctx, "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, $2, $3)", r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	if commit {
		err = tx.Commit(ctx)
	} else {
		err = tx.Rollback(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func remaining(t *testing.T, c *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRelayCommittedInOrderRolledBackNever: committed rows are published
// once each, per channel in commit order, woken by NOTIFY (a long poll);
// rolled-back rows never; the table is emptied.
func TestRelayCommittedInOrderRolledBackNever(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	s := newSink()
	startRelay(t, u, s, time.Hour) // only notifications wake it
	var want []string
	for i := 0; i < 30; i++ {
		commit := i%3 != 1
		d := fmt.Sprintf(`{"n": %d}`, i)
		insert(t, c, commit, [3]string{"a:1:x", "doc.updated", d}, [3]string{"a:1:y", "doc.updated", d})
		if commit {
			want = append(want, fmt.Sprintf(`{"n": %d}`, i))
		}
	}
	testutil.Eventually(t, 10*time.Second, "every committed row published", func() bool { return s.count() == 2*len(want) })
	s.mu.Lock()
	for _, ch := range []string{"a:1:x", "a:1:y"} {
		if got := strings.Join(s.byCh[ch], ","); got != strings.Join(want, ",") {
			t.Errorf("%s: published %s, want %s", ch, got, strings.Join(want, ","))
		}
	}
	s.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, "outbox emptied", func() bool { return remaining(t, c, "sluice_outbox") == 0 })
}

// TestRelayCommitOrderNotIDOrder: a transaction that inserted first but
// commits last is published last: order is commit order, not id order.
func TestRelayCommitOrderNotIDOrder(t *testing.T) {
	u := testDB(t)
	c1, c2 := connect(t, u), connect(t, u)
	ctx := context.Background()
	tx1, err := c1.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx1.Exec(ctx, `INSERT INTO sluice_outbox (channel, event, data) VALUES ('a:1:x', 'doc.updated', '"first insert, last commit"')`); err != nil {
		t.Fatal(err)
	}
	insert(t, c2, true, [3]string{"a:1:x", "doc.updated", `"second insert, first commit"`})
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSink()
	startRelay(t, u, s, 50*time.Millisecond)
	testutil.Eventually(t, 10*time.Second, "both published", func() bool { return s.count() == 2 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := strings.Join(s.byCh["a:1:x"], ","); got != `"second insert, first commit","first insert, last commit"` {
		t.Fatalf("published %s: not commit order", got)
	}
}

// TestRelayPoisonRowDeadLettered: a row refused like a bad POST /publish is
// moved to <table>_dead with the reason; the rows behind it, in its channel
// too, flow.
func TestRelayPoisonRowDeadLettered(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	s := newSink()
	startRelay(t, u, s, 50*time.Millisecond)
	insert(t, c, true,
		[3]string{"a:1:x", "doc.updated", "1"},
		[3]string{"a:1:x", "NotAnEvent", "2"},
		[3]string{"a:1:x", "doc.updated", "3"})
	testutil.Eventually(t, 10*time.Second, "the good rows published", func() bool { return s.count() == 2 })
	var reason, event string
	testutil.Eventually(t, 5*time.Second, "the poison row dead-lettered", func() bool {
		return c.QueryRow(context.Background(), "SELECT event, reason FROM sluice_outbox_dead").Scan(&event, &reason) == nil
	})
	if event != "NotAnEvent" || !strings.HasPrefix(reason, "invalid_event:") {
		t.Fatalf("dead letter %q %q", event, reason)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := strings.Join(s.byCh["a:1:x"], ","); got != "1,3" {
		t.Fatalf("published %s, want 1,3", got)
	}
}

// TestRelayBrokerDownRetries: rows whose publish fails stay and are
// published, in order, once the broker is back.
func TestRelayBrokerDownRetries(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	s := newSink()
	s.fail = true
	startRelay(t, u, s, 20*time.Millisecond)
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", "1"}, [3]string{"a:1:x", "doc.updated", "2"})
	time.Sleep(100 * time.Millisecond) // a few failed attempts
	if n := remaining(t, c, "sluice_outbox"); n != 2 {
		t.Fatalf("%d rows left while the broker is down, want 2", n)
	}
	s.mu.Lock()
	s.fail = false
	s.mu.Unlock()
	testutil.Eventually(t, 10*time.Second, "published after the broker is back", func() bool { return s.count() == 2 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := strings.Join(s.byCh["a:1:x"], ","); got != "1,2" {
		t.Fatalf("published %s", got)
	}
}

// TestRelayTwoInstancesOneLease: two relays at once publish every row
// once, in order; when the lease holder stops the other takes over.
func TestRelayTwoInstancesOneLease(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	s := newSink()
	stop1 := startRelay(t, u, s, 20*time.Millisecond)
	startRelay(t, u, s, 20*time.Millisecond)
	var want []string
	for i := 0; i < 200; i++ {
		insert(t, c, true, [3]string{"a:1:x", "doc.updated", fmt.Sprint(i)})
		want = append(want, fmt.Sprint(i))
		if i == 100 {
			stop1()
		}
	}
	testutil.Eventually(t, 20*time.Second, "all published", func() bool { return s.count() == 200 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := strings.Join(s.byCh["a:1:x"], ","); got != strings.Join(want, ",") {
		t.Fatalf("published out of order or twice: %s", got)
	}
}

// TestRelayRowLevelSecurity: an application role subject to forced
// row-level security inserts under its tenant's SET LOCAL; the relay (the
// table's owner, here a superuser) publishes what it may insert, and an
// insert for another tenant is refused by PostgreSQL, so nothing of it
// exists.
func TestRelayRowLevelSecurity(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	ctx := context.Background()
	role := "outbox_app_" + randomHex(4)
	for _, q := range []string{
		"CREATE ROLE " + role + " NOLOGIN NOBYPASSRLS",
		"GRANT USAGE ON SCHEMA " + strings.TrimPrefix(mustQuery(t, u, "search_path"), "") + " TO " + role,
		"GRANT INSERT ON sluice_outbox TO " + role,
		"GRANT USAGE ON SEQUENCE sluice_outbox_id_seq TO " + role,
		"ALTER TABLE sluice_outbox ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE sluice_outbox FORCE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_insert ON sluice_outbox FOR INSERT TO " + role +
			" WITH CHECK (split_part(channel, ':', 2) = current_setting('app.tenant_id', true))",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = c.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = c.Exec(context.Background(), "DROP ROLE "+role)
	})
	s := newSink()
	startRelay(t, u, s, 20*time.Millisecond)
	asTenant := func(tenant, ch string) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+role); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenant); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, 'doc.updated', '{}')", ch); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := asTenant("t1", "docs:t1:a"); err != nil {
		t.Fatalf("insert under its own tenant: %v", err)
	}
	if err := asTenant("t1", "docs:t2:a"); err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Fatalf("insert for another tenant: %v, want a row-level security refusal", err)
	}
	testutil.Eventually(t, 10*time.Second, "the tenant's row published", func() bool { return s.count() == 1 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byCh["docs:t1:a"]) != 1 || len(s.byCh["docs:t2:a"]) != 0 {
		t.Fatalf("published %v", s.byCh)
	}
}

func mustQuery(t *testing.T, u, param string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Query().Get(param)
}

func TestCheckTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"sluice_outbox", true}, {"outbox2", true}, {"_x", true},
		{"", false}, {"Outbox", false}, {"a.b", false}, {"x; DROP TABLE y", false},
		{"2x", false}, {strings.Repeat("a", 49), false},
	} {
		if err := CheckTable(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckTable(%q) = %v", tc.name, err)
		}
	}
}

func TestSQLNamesTheTable(t *testing.T) {
	q, err := SQL("app_events")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(q, "sluice_outbox") || !strings.Contains(q, "CREATE TABLE IF NOT EXISTS app_events_dead") {
		t.Fatalf("SQL(app_events) still names sluice_outbox or lacks the dead-letter table:\n%s", q)
	}
}

// TestRelayRepublishesSameGroup: a group whose publish outcome is unknown
// (applied, but the answer lost: what a crash between publish and delete
// leaves) is published again with the same rows under the same key, even
// though more rows of its channel committed meanwhile; nothing is
// delivered twice and the order holds.
func TestRelayRepublishesSameGroup(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	s := newSink()
	var mu sync.Mutex
	armed, tripped := false, false
	lost := make(chan struct{})
	publish := func(ctx context.Context, key string, rows []Row) error {
		err := s.publish(ctx, key, rows)
		mu.Lock()
		trip := armed && !tripped && len(rows) > 1
		tripped = tripped || trip
		mu.Unlock()
		if trip {
			select { // more rows commit while the outcome is unknown
			case <-lost:
			case <-time.After(10 * time.Second):
			}
			return errors.New("connection reset: outcome unknown")
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Run(ctx, Config{URL: u, Poll: 20 * time.Millisecond, Publish: publish})
	}()
	defer func() { cancel(); <-done }()
	// A first batch goes through: from then on rows are grouped.
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", "0"})
	testutil.Eventually(t, 10*time.Second, "the first row published", func() bool { return s.count() == 1 })
	mu.Lock()
	armed = true
	mu.Unlock()
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", "1"}, [3]string{"a:1:x", "doc.updated", "2"})
	testutil.Eventually(t, 10*time.Second, "the group published", func() bool { return s.count() == 3 })
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", "3"})
	close(lost)
	testutil.Eventually(t, 10*time.Second, "the rest published", func() bool { return s.count() == 4 })
	testutil.Eventually(t, 5*time.Second, "outbox and in-flight records emptied", func() bool {
		return remaining(t, c, "sluice_outbox") == 0 && remaining(t, c, "sluice_outbox_inflight") == 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := strings.Join(s.byCh["a:1:x"], ","); got != "0,1,2,3" || s.dups != 1 {
		t.Fatalf("published %s with %d repeated keys, want 0,1,2,3 and the group's key once more", got, s.dups)
	}
}

// TestRelayLeasePerTable: outboxes of the same name in two schemas are
// relayed at once (the lease is per table, not per name).
func TestRelayLeasePerTable(t *testing.T) {
	u1, u2 := testDB(t), testDB(t)
	s1, s2 := newSink(), newSink()
	startRelay(t, u1, s1, 20*time.Millisecond)
	startRelay(t, u2, s2, 20*time.Millisecond)
	insert(t, connect(t, u1), true, [3]string{"a:1:x", "doc.updated", "1"})
	insert(t, connect(t, u2), true, [3]string{"a:1:x", "doc.updated", "1"})
	testutil.Eventually(t, 10*time.Second, "both outboxes relayed", func() bool { return s1.count() == 1 && s2.count() == 1 })
}

// TestRelayAfterRestartIdentity: after TRUNCATE … RESTART IDENTITY, new
// rows reuse old ids, yet are published (keys name rows by seq).
func TestRelayAfterRestartIdentity(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	s := newSink()
	startRelay(t, u, s, 20*time.Millisecond)
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", "1"})
	testutil.Eventually(t, 10*time.Second, "the first row published", func() bool { return s.count() == 1 })
	if _, err := c.Exec(context.Background(), "TRUNCATE sluice_outbox RESTART IDENTITY"); err != nil {
		t.Fatal(err)
	}
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", "2"})
	testutil.Eventually(t, 10*time.Second, "the row with a reused id published", func() bool { return s.count() == 2 })
}

// TestRelayNonSuperuserOwnerUnderForcedRLS: the relay connects as the
// table's owner, neither superuser nor BYPASSRLS, with FORCE ROW LEVEL
// SECURITY on and the policies of examples/outbox/rls.sql; the application's
// role inserts for its tenant; the row is numbered (the trigger runs as the
// owner), relayed and deleted.
func TestRelayNonSuperuserOwnerUnderForcedRLS(t *testing.T) {
	su := testDB(t) // a schema of the test's own; its outbox (owned by the superuser) is not used
	schema := mustQuery(t, su, "search_path")
	c := connect(t, su)
	ctx := context.Background()
	relayRole, app := "outbox_relay_"+randomHex(4), "outbox_app_"+randomHex(4)
	for _, q := range []string{
		"CREATE ROLE " + relayRole + " LOGIN NOSUPERUSER NOBYPASSRLS",
		"CREATE ROLE " + app + " NOLOGIN NOSUPERUSER NOBYPASSRLS",
		"CREATE SCHEMA " + schema + "_r AUTHORIZATION " + relayRole,
		"GRANT USAGE ON SCHEMA " + schema + "_r TO " + app,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP SCHEMA " + schema + "_r CASCADE", "DROP OWNED BY " + app, "DROP OWNED BY " + relayRole, "DROP ROLE " + app, "DROP ROLE " + relayRole} {
			_, _ = c.Exec(context.Background(), q)
		}
	})
	u, _ := url.Parse(su)
	u.User = url.User(relayRole)
	q := u.Query()
	q.Set("search_path", schema+"_r")
	u.RawQuery = q.Encode()
	ru := u.String()
	if err := Init(ctx, ru, DefaultTable); err != nil {
		t.Fatalf("init as %s: %v", relayRole, err)
	}
	owner := connect(t, ru)
	for _, q := range []string{ // examples/outbox/rls.sql
		"GRANT INSERT ON sluice_outbox TO " + app,
		"GRANT USAGE ON SEQUENCE sluice_outbox_id_seq TO " + app,
		"ALTER TABLE sluice_outbox ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE sluice_outbox FORCE ROW LEVEL SECURITY",
		"CREATE POLICY outbox_tenant_insert ON sluice_outbox FOR INSERT TO " + app +
			" WITH CHECK (split_part(channel, ':', 2) = current_setting('app.tenant_id', true))",
		"CREATE POLICY outbox_relay ON sluice_outbox FOR ALL TO " + relayRole + " USING (true) WITH CHECK (true)",
	} {
		if _, err := owner.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s := newSink()
	startRelay(t, ru, s, 20*time.Millisecond)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"SET LOCAL search_path = " + schema + "_r",
		"SET LOCAL ROLE " + app,
		"SELECT set_config('app.tenant_id', 't1', true)",
		"INSERT INTO sluice_outbox (channel, event, data) VALUES ('docs:t1:a', 'doc.updated', '1')",
		"INSERT INTO sluice_outbox (channel, event, data) VALUES ('docs:t1:a', 'doc.updated', '2')",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit (the numbering trigger runs as %s): %v", relayRole, err)
	}
	testutil.Eventually(t, 10*time.Second, "relayed by the non-superuser owner", func() bool { return s.count() == 2 })
	testutil.Eventually(t, 5*time.Second, "deleted", func() bool { return remaining(t, owner, "sluice_outbox") == 0 })
}

// TestRelayTakeoverKeepsSingleRowKeys: a holder dies mid-batch after it
// published a channel's lone row under the row's own key while another
// channel's group was still in flight; the next holder publishes the
// recorded group, then must publish that row alone again (under the same
// key) rather than in a group with the rows that committed meanwhile
// (under a group key: delivered twice).
func TestRelayTakeoverKeepsSingleRowKeys(t *testing.T) {
	u := testDB(t)
	c := connect(t, u)
	s := newSink()
	release := make(chan struct{})
	var mu sync.Mutex
	armed, dead := false, false
	publish1 := func(ctx context.Context, key string, rows []Row) error {
		mu.Lock()
		a, d := armed, dead
		mu.Unlock()
		switch {
		case d:
			return errors.New("killed")
		case a && len(rows) > 1:
			<-release // killed while this group is in flight
			return errors.New("killed")
		}
		return s.publish(ctx, key, rows)
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan struct{})
	go func() {
		defer close(done1)
		_ = Run(ctx1, Config{URL: u, Poll: 20 * time.Millisecond, Batch: 50, Publish: publish1})
	}()
	defer func() { close(release); cancel1(); <-done1 }()
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", `"a0"`})
	testutil.Eventually(t, 10*time.Second, "the first row published", func() bool { return s.count() == 1 })
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", `"a1"`})
	testutil.Eventually(t, 10*time.Second, "a clean batch", func() bool { return s.count() == 2 })
	mu.Lock()
	armed = true
	mu.Unlock()
	// One batch: a group of a:1:x (in flight forever), b:1:x's lone row.
	insert(t, c, true, [3]string{"a:1:x", "doc.updated", `"a2"`}, [3]string{"a:1:x", "doc.updated", `"a3"`},
		[3]string{"b:1:x", "doc.updated", `"b0"`})
	testutil.Eventually(t, 10*time.Second, "the lone row published", func() bool { return s.count() == 3 })
	insert(t, c, true, [3]string{"b:1:x", "doc.updated", `"b1"`})
	// SIGKILL: its connection (and lease) goes, nothing more is published.
	mu.Lock()
	dead = true
	mu.Unlock()
	var killed bool
	if err := c.QueryRow(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 2
		AND classid::bigint = hashtext('sluice outbox lease')::bigint & 4294967295
		AND objid::bigint = hashtext('sluice_outbox'::regclass::oid::text)::bigint & 4294967295`).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the lease holder: %v %v", killed, err)
	}
	startRelay(t, u, s, 20*time.Millisecond)
	testutil.Eventually(t, 10*time.Second, "the rest published", func() bool {
		return remaining(t, c, "sluice_outbox") == 0 && remaining(t, c, "sluice_outbox_inflight") == 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, b := strings.Join(s.byCh["a:1:x"], ","), strings.Join(s.byCh["b:1:x"], ","); a != `"a0","a1","a2","a3"` || b != `"b0","b1"` {
		t.Fatalf("published a:1:x %s, b:1:x %s; want a0,a1,a2,a3 and b0,b1, each once", a, b)
	}
}
