package server

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigPrecedence(t *testing.T) {
	c, err := LoadConfig([]string{"--history-size", "7", "--keepalive=3s"},
		env(map[string]string{"SLUICE_HISTORY_SIZE": "5", "SLUICE_RETRY": "4s", "SLUICE_JWT_SECRET": "x"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HistorySize != 7 || c.KeepAlive != 3*time.Second || c.Retry != 4*time.Second || c.HistoryTTL != time.Hour {
		t.Fatalf("got %+v", c)
	}
	if c.Addr != ":8080" {
		t.Fatalf("addr %q", c.Addr)
	}
	c, err = LoadConfig([]string{"--dev"}, env(nil), io.Discard)
	if err != nil || c.Addr != "127.0.0.1:8080" || !c.Dev {
		t.Fatalf("--dev: %v %+v", err, c)
	}
}

func TestBadConfigFailsAtStart(t *testing.T) {
	base := map[string]string{"SLUICE_JWT_SECRET": "x"}
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{}, nil, "SLUICE_JWT_SECRET"},
		{map[string]string{"SLUICE_HISTORY_SIZE": "-1"}, nil, "SLUICE_HISTORY_SIZE"},
		{map[string]string{"SLUICE_HISTORY_TTL": "1 hour"}, nil, "SLUICE_HISTORY_TTL"},
		{map[string]string{"SLUICE_BROKER": "kafka"}, nil, "SLUICE_BROKER"},
		{map[string]string{"SLUICE_BROKER": "redis"}, nil, "SLUICE_REDIS_URL"},
		{map[string]string{"SLUICE_BROKER": "redis", "SLUICE_REDIS_URL": "http://x"}, nil, "SLUICE_REDIS_URL"},
		{map[string]string{"SLUICE_LOG_LEVEL": "loud"}, nil, "SLUICE_LOG_LEVEL"},
		{map[string]string{"SLUICE_MEMBERSHIP": "ldap"}, nil, "SLUICE_MEMBERSHIP"},
		{map[string]string{"SLUICE_PUBLISH_KEYS": "short"}, nil, "SLUICE_PUBLISH_KEYS"},
		{map[string]string{"SLUICE_DRAIN_SPREAD": "1s"}, nil, "SLUICE_DRAIN_SPREAD"},
		{map[string]string{"SLUICE_DJANGO_INGEST": "events_channel"}, nil, "SLUICE_DJANGO_INGEST"},
		{nil, []string{"--keepalive", "soon"}, "keepalive"},
		{map[string]string{"SLUICE_DRAIN_TIMEOUT": "0s"}, nil, "SLUICE_DRAIN_TIMEOUT"},
		{map[string]string{"SLUICE_MAX_CHANNELS": "22"}, nil, "SLUICE_MAX_CHANNELS"},
		{map[string]string{"SLUICE_ADDR": "bogus"}, nil, "SLUICE_ADDR"},
		{map[string]string{"SLUICE_METRICS_ADDR": "bogus"}, nil, "SLUICE_METRICS_ADDR"},
		{map[string]string{"SLUICE_ALLOW_ORIGINS": "not-an-origin"}, nil, "SLUICE_ALLOW_ORIGINS"},
		{map[string]string{"SLUICE_TRUSTED_PROXIES": "10.0.0.0/33"}, nil, "SLUICE_TRUSTED_PROXIES"},
		{nil, []string{"stray"}, "stray"},
	}
	for _, tc := range cases {
		m := map[string]string{}
		if tc.want != "SLUICE_JWT_SECRET" {
			for k, v := range base {
				m[k] = v
			}
		}
		for k, v := range tc.env {
			m[k] = v
		}
		_, err := LoadConfig(tc.args, env(m), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one naming %s", tc.env, tc.args, err, tc.want)
		}
	}
}

// TestREADMEConfigTable keeps the README's configuration table in step with
// the settings Sluice reads.
func TestREADMEConfigTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, s := range settings {
		def := "none"
		if s.def != "" {
			def = "`" + s.def + "`"
		}
		row := "| `" + s.env + "` | `--" + s.flagName() + "` |"
		i := strings.Index(readme, row)
		if i < 0 {
			t.Errorf("README has no row for %s", s.env)
			continue
		}
		line := readme[i:]
		line = line[:strings.IndexByte(line, '\n')]
		if !strings.HasSuffix(line, "| "+def+" |") {
			t.Errorf("README row %q: default should be %s", line, def)
		}
	}
}

// Every Redis URL form the broker understands passes validation; others are
// refused with a message that shows the forms.
func TestRedisURLForms(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"redis://127.0.0.1:6379/0", true},
		{"rediss://:secret@redis.internal:6380/0", true},
		{"valkey://127.0.0.1:6379/0", true},
		{"redis://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002", true},
		{"redis://127.0.0.1:7000?addr=127.0.0.1:7001", true},
		{"redis://sentinel:26379/0?master_set=mymaster", true},
		{"http://127.0.0.1:6379", false},
		{"127.0.0.1:6379", false},
	} {
		_, err := LoadConfig(nil, env(map[string]string{"SLUICE_JWT_SECRET": "x", "SLUICE_BROKER": "redis", "SLUICE_REDIS_URL": tt.url}), io.Discard)
		if tt.ok && err != nil {
			t.Errorf("%s: %v", tt.url, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "cluster: redis://host1:port1,host2:port2")) {
			t.Errorf("%s: err = %v, want the URL forms", tt.url, err)
		}
	}
}
