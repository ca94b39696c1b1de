package server

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactSecrets(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:pw@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"redis://default:pw@h1:1,h2:2/0", "redis://default:xxxxx@h1:1,h2:2/0"},
		{"rediss://user:p%40ss@h:6380/0?addr=h2:1", "rediss://user:xxxxx@h:6380/0?addr=h2:1"},
		{"https://TOKEN@example.com/jwks", "https://xxxxx@example.com/jwks"},
		{"postgres://app:pw@db/app?sslmode=disable&password=pw2", "postgres://app:xxxxx@db/app?sslmode=disable&password=xxxxx"},
		{"host=db user=app password=pw dbname=app", "host=db user=app password=xxxxx dbname=app"},
		{"password=pw host=db", "password=xxxxx host=db"},
		{"http:https://auth.example/check?token=t0k&x=1", "http:https://auth.example/check?token=xxxxx&x=1"},
		{"file:/etc/sluice/members.json", "file:/etc/sluice/members.json"},
		{"https://example.com/jwks?api_key=k&Secret=s", "https://example.com/jwks?api_key=xxxxx&Secret=xxxxx"},
	} {
		if got := redactSecrets(tc.in); got != tc.want {
			t.Errorf("redactSecrets(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEffectiveSettings(t *testing.T) {
	env := map[string]string{
		"SLUICE_JWT_SECRET":   "secret-0123456789abcdef0123456789",
		"SLUICE_PUBLISH_KEYS": "key-a-0123456789abcdef, key-b-0123456789abcdef",
		"SLUICE_HISTORY_SIZE": "5",
	}
	got := map[string]Setting{}
	all := EffectiveSettings([]string{"--history-size", "6", "--dev"}, func(k string) string { return env[k] })
	for _, s := range all {
		got[s.Env] = s
	}
	if len(all) != len(settings) {
		t.Fatalf("%d settings, want %d", len(all), len(settings))
	}
	for env, want := range map[string]Setting{
		"SLUICE_JWT_SECRET":   {Value: "<redacted: 33 bytes>"},
		"SLUICE_PUBLISH_KEYS": {Value: "<redacted: 2 keys>"},
		"SLUICE_HISTORY_SIZE": {Value: "6"},
		"SLUICE_ADDR":         {Value: "127.0.0.1:8080", Default: true},
		"SLUICE_KEEPALIVE":    {Value: "15s", Default: true},
	} {
		want.Env = env
		if got[env] != want {
			t.Errorf("%s: %+v, want %+v", env, got[env], want)
		}
	}
	for _, s := range all {
		if strings.Contains(s.Value, "0123456789abcdef") {
			t.Errorf("%s shows a secret: %s", s.Env, s.Value)
		}
	}
}

// FuzzRedactSecrets: a password in a URL's user part or in a password query
// parameter never survives.
func FuzzRedactSecrets(f *testing.F) {
	f.Add("redis", "default", "hunter2hunter2", "h:6379/0")
	f.Add("postgres", "app", "s3cr3t-pass", "db:5432/app?sslmode=disable")
	// A password that is also the scheme is not the redactor's to hide.
	f.Add("000000000000", "0", "000000000000", "0")
	f.Fuzz(func(t *testing.T, scheme, user, pass, rest string) {
		ok := func(s string, min int) bool {
			if len(s) < min {
				return false
			}
			for _, c := range s {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
					return false
				}
			}
			return true
		}
		if !ok(scheme, 1) || !ok(user, 0) || !ok(pass, 12) || strings.Contains(rest, pass) || strings.Contains(scheme, pass) || strings.Contains(user, pass) || strings.ContainsAny(rest, "@ \t\n") {
			return
		}
		for _, u := range []string{
			scheme + "://" + user + ":" + pass + "@" + rest,
			scheme + "://h/x?password=" + pass + "&" + rest,
		} {
			if got := redactSecrets(u); strings.Contains(got, pass) {
				t.Fatalf("redactSecrets(%q) = %q", u, got)
			}
		}
	})
}

// TestConfigLogValueRedacts: logging or printing a Config never shows its
// secrets.
func TestConfigLogValueRedacts(t *testing.T) {
	c := DefaultConfig()
	c.JWTSecret = "jwt-secret-0123456789abcdef0123456789"
	c.PublishKeys = []string{"publisher-key-0123456789abcdef"}
	c.RedisURL = "redis://default:redis-password-0123456789abcdef@h:6379/0"
	c.PostgresURL = "postgres://app:pg-password-0123456789abcdef@db/app"
	c.JWKSURL = "https://idp/jwks?token=jwks-token-0123456789abcdef"
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "cfg", c)
	for _, out := range []string{b.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v", c, &c)} {
		if strings.Contains(out, "0123456789abcdef") {
			t.Errorf("a secret shows: %s", out)
		}
		if !strings.Contains(out, "redacted") || !strings.Contains(out, "xxxxx") {
			t.Errorf("the secrets are not marked redacted: %s", out)
		}
	}
}
