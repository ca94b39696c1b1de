// Package outbox_test runs the outbox publishing snippets of this directory
// (SQL, Python psycopg, Django, Node pg, Go pgx) against a real PostgreSQL
// and a gateway relaying its outbox, and checks that docs/outbox.md quotes
// them verbatim.
package outbox_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/channel"
	"github.com/sluicehq/sluice/event"
	"github.com/sluicehq/sluice/outbox"
	"github.com/sluicehq/sluice/server"
)

const tenant = "3f1c2a9e-8d4b-4c1e-9a7f-0b5e6d7c8a91"

// missing skips (or, in CI, fails) a snippet whose interpreter or package
// is not installed.
func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (see .ci/services)", what)
	}
	t.Skipf("%s not installed: skipping this snippet", what)
}

// python returns a python3 that imports modules, or "".
func python(modules ...string) string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import "+strings.Join(modules, ", ")).Run() == nil {
			return py
		}
	}
	return ""
}

func TestOutboxSnippets(t *testing.T) {
	base := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("set SLUICE_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the outbox snippets")
	}
	ctx := context.Background()
	schema := "outbox_snippets_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) }) // after the schema is dropped
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".scans (id int PRIMARY KEY, progress int NOT NULL DEFAULT 0)",
		"INSERT INTO " + schema + ".scans (id) SELECT generate_series(1, 10)",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("options", "-csearch_path="+schema) // libpq's way, understood by every driver here
	u.RawQuery = q.Encode()
	dbURL := u.String()
	if err := outbox.Init(ctx, dbURL, outbox.DefaultTable); err != nil {
		t.Fatal(err)
	}

	cfg := server.DefaultConfig()
	cfg.JWTSecret = "snippets-secret-0123456789abcdefghij"
	cfg.Outbox, cfg.PostgresURL, cfg.OutboxPoll = "postgres", dbURL, 100*time.Millisecond
	g, err := server.New(ctx, cfg, server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	env := []string{"DATABASE_URL=" + dbURL, "TENANT=" + tenant, "PYTHONDONTWRITEBYTECODE=1"}
	pw, _ := u.User.Password()
	djangoEnv := []string{"DATABASE_HOST=" + u.Hostname(), "DATABASE_PORT=" + u.Port(), "DATABASE_USER=" + u.User.Username(),
		"DATABASE_NAME=" + strings.TrimPrefix(u.Path, "/"), "DATABASE_OPTIONS=-c search_path=" + schema, "PGPASSWORD=" + pw}
	cases := []struct {
		name string
		scan int
		cmd  func(t *testing.T) *exec.Cmd
	}{
		{"sql", 1, func(t *testing.T) *exec.Cmd {
			if _, err := exec.LookPath("psql"); err != nil {
				missing(t, "psql")
			}
			return exec.Command("psql", dbURL, "-v", "ON_ERROR_STOP=1", "-v", "tenant="+tenant, "-v", "scan=1", "-f", "publish.sql")
		}},
		{"python-psycopg", 2, func(t *testing.T) *exec.Cmd {
			py := python("psycopg")
			if py == "" {
				missing(t, "python3 with psycopg 3 (apt-get install python3-psycopg)")
			}
			return exec.Command(py, "python/publish_psycopg.py")
		}},
		{"django", 3, func(t *testing.T) *exec.Cmd {
			py := python("django", "psycopg2")
			if py == "" {
				missing(t, "python3 with Django and psycopg2 (apt-get install python3-django python3-psycopg2)")
			}
			if out, err := exec.Command(py, "-c", "import ast; ast.parse(open('django/send_event_migration.py').read())").CombinedOutput(); err != nil {
				t.Fatalf("send_event_migration.py: %v\n%s", err, out)
			}
			c := exec.Command(py, "publish.py")
			c.Dir = "django"
			c.Env = append(os.Environ(), djangoEnv...)
			return c
		}},
		{"node-pg", 4, func(t *testing.T) *exec.Cmd {
			if _, err := exec.LookPath("node"); err != nil {
				missing(t, "node")
			}
			if _, err := exec.LookPath("npm"); err != nil {
				missing(t, "npm")
			}
			dir := t.TempDir()
			for _, f := range []string{"package.json", "publish.mjs"} {
				b, err := os.ReadFile(filepath.Join("node", f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			npm := exec.Command("npm", "install", "--no-audit", "--no-fund", "--silent")
			npm.Dir = dir
			if out, err := npm.CombinedOutput(); err != nil {
				t.Skipf("npm install pg failed (no registry?): %v\n%s", err, out)
			}
			c := exec.Command("node", "publish.mjs")
			c.Dir = dir
			return c
		}},
		{"go-pgx", 5, func(t *testing.T) *exec.Cmd {
			return exec.Command("go", "run", "./go")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd(t)
			if c.Env == nil {
				c.Env = os.Environ()
			}
			c.Env = append(c.Env, append(env, "SCAN="+strconv.Itoa(tc.scan))...)
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", c.Args, err, out)
			}
			ch, err := channel.Parse("scan-progress:" + tenant + ":" + strconv.Itoa(tc.scan))
			if err != nil {
				t.Fatal(err)
			}
			evs := published(t, g, ch, 1)
			var d struct{ Scan, Progress int }
			if err := json.Unmarshal(evs[0].Data, &d); err != nil || evs[0].Type != "scan.progress" || d.Progress != 40 || d.Scan != tc.scan {
				t.Fatalf("published %s %s, want scan.progress {scan: %d, progress: 40}", evs[0].Type, evs[0].Data, tc.scan)
			}
			var progress int
			if err := admin.QueryRow(ctx, "SELECT progress FROM "+schema+".scans WHERE id = $1", tc.scan).Scan(&progress); err != nil || progress != 40 {
				t.Fatalf("scan %d progress %d (%v): the change and its event must commit together", tc.scan, progress, err)
			}
			time.Sleep(300 * time.Millisecond) // 3 polls: the rolled-back event must not appear
			if evs := published(t, g, ch, 1); len(evs) != 1 {
				t.Fatalf("%d events: the rolled-back transaction published", len(evs))
			}
		})
	}
	// Row-level security: rls.sql, then publish.sql as the application's
	// role (not a superuser, no BYPASSRLS) acting for its tenant.
	t.Run("sql-under-rls", func(t *testing.T) {
		if _, err := exec.LookPath("psql"); err != nil {
			missing(t, "psql")
		}
		app := "outbox_app_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
		if _, err := admin.Exec(ctx, "CREATE ROLE "+app+" NOLOGIN NOSUPERUSER NOBYPASSRLS"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.Exec(context.Background(), "DROP OWNED BY "+app)
			_, _ = admin.Exec(context.Background(), "DROP ROLE "+app)
		})
		for _, q := range []string{"GRANT USAGE ON SCHEMA " + schema + " TO " + app, "GRANT UPDATE, SELECT ON " + schema + ".scans TO " + app} {
			if _, err := admin.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command("psql", dbURL, "-v", "ON_ERROR_STOP=1", "-v", "app_role="+app, "-v", "relay_role=postgres", "-f", "rls.sql").CombinedOutput(); err != nil {
			t.Fatalf("rls.sql: %v\n%s", err, out)
		}
		asApp, _ := url.Parse(dbURL)
		q := asApp.Query()
		q.Set("options", "-csearch_path="+schema+" -crole="+app)
		asApp.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // libpq does not read + as a space
		if out, err := exec.Command("psql", asApp.String(), "-v", "ON_ERROR_STOP=1", "-v", "tenant="+tenant, "-v", "scan=6", "-f", "publish.sql").CombinedOutput(); err != nil {
			t.Fatalf("publish.sql as %s: %v\n%s", app, err, out)
		}
		other := "00000000-0000-4000-8000-000000000000"
		out, err := exec.Command("psql", asApp.String(), "-v", "ON_ERROR_STOP=1", "-v", "tenant="+tenant, "-c",
			"BEGIN; SELECT set_config('app.tenant_id', '"+tenant+"', true); INSERT INTO sluice_outbox (channel, event, data) VALUES ('scan-progress:"+other+":6', 'scan.progress', '{}'); COMMIT;").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "row-level security") {
			t.Fatalf("an insert for another tenant: %v\n%s", err, out)
		}
		ch, _ := channel.Parse("scan-progress:" + tenant + ":6")
		if evs := published(t, g, ch, 1); len(evs) != 1 {
			t.Fatalf("%d events", len(evs))
		}
	})
	var left int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+schema+".sluice_outbox").Scan(&left); err != nil || left != 0 {
		t.Errorf("%d rows left in the outbox (%v)", left, err)
	}
}

// published waits until ch's history holds at least n events and returns
// them.
func published(t *testing.T, g *server.Server, ch channel.Name, n int) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _, err := g.Broker().Since(context.Background(), ch, event.Position{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d events within 10 s, want %d", ch, len(evs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOutboxDocExcerpts checks that every code block of docs/outbox.md
// marked <!-- from <file> --> is a verbatim excerpt of that file, and that
// only shell blocks go unmarked.
func TestOutboxDocExcerpts(t *testing.T) {
	b, err := os.ReadFile("../../docs/outbox.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	n := 0
	for i := 0; i < len(lines); i++ {
		lang, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		start := i
		var code []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			code = append(code, lines[i])
		}
		marker := ""
		if start > 0 {
			marker = strings.TrimSpace(lines[start-1])
		}
		file, ok := strings.CutPrefix(marker, "<!-- from ")
		if !ok {
			if lang != "sh" {
				t.Errorf("line %d: %s block without <!-- from <file> -->", start+1, lang)
			}
			continue
		}
		file = strings.TrimSuffix(file, " -->")
		src, err := os.ReadFile(filepath.Join("../..", file))
		if err != nil {
			t.Errorf("line %d: %v", start+1, err)
			continue
		}
		if !strings.Contains(string(src), strings.Join(code, "\n")) {
			t.Errorf("line %d: not a verbatim excerpt of %s", start+1, file)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d excerpts found", n)
	}
}
