package server

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Setting is one configuration variable and the value in effect
// (EffectiveSettings).
type Setting struct {
	Env     string // the SLUICE_* variable
	Value   string // as the variable would spell it, secrets redacted
	Default bool   // neither the environment nor a flag set it
}

// EffectiveSettings returns every configuration variable, in the README
// table's order, with the value LoadConfig(args, getenv, …) takes for it: the
// flag's, else the environment's, else the default. Secrets are redacted:
// SLUICE_JWT_SECRET and SLUICE_PUBLISH_KEYS show only their size, passwords
// and tokens in URLs are replaced by "xxxxx". It does not validate: LoadConfig
// does.
func EffectiveSettings(args []string, getenv func(string) string) []Setting {
	flags := map[string]string{}
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, s := range settings {
		env := s.env
		fs.Func(s.flagName(), "", func(v string) error { flags[env] = v; return nil })
	}
	dev := fs.Bool("dev", false, "")
	_ = fs.Parse(args) // LoadConfig reports the errors
	out := make([]Setting, 0, len(settings))
	for _, s := range settings {
		v, set := flags[s.env]
		if !set {
			v = getenv(s.env)
			set = v != ""
		}
		if !set {
			v = s.def
			if s.env == "SLUICE_ADDR" && *dev {
				v = "127.0.0.1:8080"
			}
		}
		out = append(out, Setting{Env: s.env, Value: redactSetting(s.env, v), Default: !set})
	}
	return out
}

var (
	urlUserinfo = regexp.MustCompile(`([A-Za-z0-9+.-]+://)([^/?#@\s]*)@`)
	secretParam = regexp.MustCompile(`(?i)((?:^|[?&;\s])(?:password|passwd|pass|pwd|sslpassword|secret|token|access_token|api_key|apikey|key)=)[^&;\s]*`)
)

// redactSetting hides secrets in the value v of the variable env.
func redactSetting(env, v string) string {
	if v == "" {
		return v
	}
	switch {
	case env == "SLUICE_JWT_SECRET":
		return fmt.Sprintf("<redacted: %d bytes>", len(v))
	case env == "SLUICE_PUBLISH_KEYS":
		n := 0
		for _, k := range strings.Split(v, ",") {
			if strings.TrimSpace(k) != "" {
				n++
			}
		}
		if n == 1 {
			return "<redacted: 1 key>"
		}
		return fmt.Sprintf("<redacted: %d keys>", n)
	case strings.Contains(env, "SECRET") || strings.Contains(env, "PASSWORD"):
		return "<redacted>"
	}
	return redactSecrets(v)
}

// redactSecrets replaces the password (or a lone user part, which may be a
// token) of every URL in s, and the values of query or DSN parameters named
// like password, secret, token or key, with "xxxxx".
func redactSecrets(s string) string {
	s = urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlUserinfo.FindStringSubmatch(m)
		user, _, hasPass := strings.Cut(sub[2], ":")
		if !hasPass {
			return sub[1] + "xxxxx@"
		}
		return sub[1] + user + ":xxxxx@"
	})
	return secretParam.ReplaceAllString(s, "${1}xxxxx")
}

// LogValue logs the configuration with its secrets redacted as
// EffectiveSettings redacts them: the signing secret and publisher keys by
// their size, passwords and tokens in URLs as "xxxxx".
func (c Config) LogValue() slog.Value {
	r := func(env, v string) string { return redactSetting(env, v) }
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("broker", c.Broker),
		slog.String("redis_url", r("SLUICE_REDIS_URL", c.RedisURL)),
		slog.String("redis_prefix", c.RedisPrefix),
		slog.String("membership", r("SLUICE_MEMBERSHIP", c.Membership)),
		slog.String("postgres_url", r("SLUICE_POSTGRES_URL", c.PostgresURL)),
		slog.String("outbox", c.Outbox),
		slog.String("jwt_secret", r("SLUICE_JWT_SECRET", c.JWTSecret)),
		slog.String("jwt_public_key", c.JWTPublicKey),
		slog.String("jwks_url", r("SLUICE_JWKS_URL", c.JWKSURL)),
		slog.String("api_keys_file", c.APIKeysFile),
		slog.String("publish_keys", r("SLUICE_PUBLISH_KEYS", strings.Join(c.PublishKeys, ","))),
		slog.String("routes_file", c.RoutesFile),
		slog.Bool("dev", c.Dev),
	)
}

// String is the configuration as LogValue shows it, secrets redacted, so
// that printing a Config with fmt never shows them either.
func (c Config) String() string { return c.LogValue().String() }
