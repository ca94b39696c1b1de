package auth

import (
	"net/http"
	"net/url"
	"strings"
)

// Redacted replaces a secret in logs and error bodies.
const Redacted = "REDACTED"

// RedactQuery returns rawQuery with the values of the access_token and
// ticket parameters replaced by "REDACTED", everything else kept byte for
// byte (protocol.md §2: tokens never reach logs). It errs on the side of hiding:
// keys match after unescaping and in any letter case, and parameters are
// split on ';' as well as '&', so a token is hidden even where the server
// would not have read it.
func RedactQuery(rawQuery string) string {
	var b strings.Builder
	changed := false
	start := 0
	for i := 0; i <= len(rawQuery); i++ {
		if i < len(rawQuery) && rawQuery[i] != '&' && rawQuery[i] != ';' {
			continue
		}
		part := rawQuery[start:i]
		if k, v, ok := strings.Cut(part, "="); ok && v != "" && v != Redacted && secretParam(k) {
			if !changed {
				b.Grow(len(rawQuery))
				b.WriteString(rawQuery[:start])
				changed = true
			}
			b.WriteString(k)
			b.WriteString("=" + Redacted)
		} else if changed {
			b.WriteString(part)
		}
		if changed && i < len(rawQuery) {
			b.WriteByte(rawQuery[i])
		}
		start = i + 1
	}
	if !changed {
		return rawQuery
	}
	return b.String()
}

// secretParam reports whether a raw query key names a query credential.
func secretParam(rawKey string) bool {
	k, err := url.QueryUnescape(rawKey)
	if err != nil {
		k = rawKey
	}
	k = strings.TrimSpace(k)
	return strings.EqualFold(k, "access_token") || strings.EqualFold(k, "ticket")
}

// RedactURL returns u as a string fit for a log line: query credentials
// redacted (RedactQuery) and any password in the user info hidden.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.RawQuery = RedactQuery(u.RawQuery)
	c.Fragment, c.RawFragment = "", ""
	return c.Redacted()
}

// secretHeaders are the headers RedactHeader hides.
var secretHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// RedactHeader returns a copy of h fit for a log line: Authorization and
// Proxy-Authorization keep their scheme only ("Bearer REDACTED"), Cookie and
// Set-Cookie become "REDACTED". Keys match in any letter case. h is not
// modified.
func RedactHeader(h http.Header) http.Header {
	c := h.Clone()
	for k, vs := range c {
		for _, s := range secretHeaders {
			if !strings.EqualFold(k, s) {
				continue
			}
			red := make([]string, len(vs))
			for i, v := range vs {
				red[i] = Redacted
				if strings.HasSuffix(s, "Authorization") {
					if scheme, _, ok := strings.Cut(strings.TrimSpace(v), " "); ok && isToken(scheme) {
						red[i] = scheme + " " + Redacted
					}
				}
			}
			c[k] = red
		}
	}
	return c
}

// isToken reports whether s looks like an auth scheme name (letters, digits,
// '-', '_', '.'), short enough not to be a credential itself.
func isToken(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
