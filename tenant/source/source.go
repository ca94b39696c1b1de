// Package source chooses the tenant gate's membership source by its
// configuration name, the value of SLUICE_MEMBERSHIP (token, file:<path>,
// postgres, http:<url>). It is server configuration: it imports every
// source, pgx included (tenant/postgres), which package tenant does not.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sluicehq/sluice/tenant"
	"github.com/sluicehq/sluice/tenant/postgres"
)

type nopCloser struct{}

// Close does nothing.
func (nopCloser) Close() error { return nil }

// FromSpec builds the Membership named by a SLUICE_MEMBERSHIP value:
//
//	token          the token's tenant claim (tenant.Token); also the empty spec
//	file:<path>    a JSON file (tenant.NewFile)
//	postgres       a SQL query (postgres.New with pg)
//	http:<url>     the application's backend (tenant.NewHTTP with h, h.URL = <url>);
//	               a bare http://… or https://… URL means the same
//
// The io.Closer releases what the source holds (the Postgres pool); it is
// never nil. Anything else is an error naming the accepted forms (CheckSpec),
// which never quotes a URL's user info or query.
func FromSpec(ctx context.Context, spec string, pg postgres.Config, h tenant.HTTPConfig) (tenant.Membership, io.Closer, error) {
	kind, arg, err := parseSpec(spec)
	if err != nil {
		return nil, nil, err
	}
	switch kind {
	case "file":
		f, err := tenant.NewFile(arg)
		if err != nil {
			return nil, nil, err
		}
		return f, nopCloser{}, nil
	case "postgres":
		p, err := postgres.New(ctx, pg)
		if err != nil {
			return nil, nil, err
		}
		return p, p, nil
	case "http":
		h.URL = arg
		m, err := tenant.NewHTTP(h)
		if err != nil {
			return nil, nil, err
		}
		return m, nopCloser{}, nil
	}
	return tenant.Token{}, nopCloser{}, nil
}

// CheckSpec reports whether spec is a SLUICE_MEMBERSHIP value FromSpec
// accepts, without opening anything: the form, and for http the URL
// template (tenant.NewHTTP's rules, which build no connection). A start
// calls it to refuse a mistake before anything else; the error names the
// accepted forms and never quotes a URL's user info or query.
func CheckSpec(spec string) error {
	kind, arg, err := parseSpec(spec)
	if err != nil || kind != "http" {
		return err
	}
	_, err = tenant.NewHTTP(tenant.HTTPConfig{URL: arg})
	return err
}

// parseSpec splits a SLUICE_MEMBERSHIP value into its kind (token, file,
// postgres, http) and argument (the path, or the URL template).
func parseSpec(spec string) (kind, arg string, err error) {
	if strings.HasPrefix(spec, "https://") || strings.HasPrefix(spec, "http://") {
		return "http", spec, nil // the URL alone, without the "http:" prefix
	}
	kind, arg, _ = strings.Cut(spec, ":")
	switch kind {
	case "", "token":
		if arg != "" || strings.Contains(spec, ":") {
			return "", "", errors.New("tenant: SLUICE_MEMBERSHIP=token takes no argument")
		}
		return "token", "", nil
	case "file":
		if arg == "" {
			return "", "", errors.New("tenant: SLUICE_MEMBERSHIP=file:<path> needs a path")
		}
		return kind, arg, nil
	case "postgres":
		if arg != "" || strings.Contains(spec, ":") {
			return "", "", errors.New("tenant: SLUICE_MEMBERSHIP=postgres takes no argument; the connection URL is SLUICE_POSTGRES_URL")
		}
		return kind, "", nil
	case "https": // a mistyped bare URL: NewHTTP's rules say what is wrong
		return "http", spec, nil
	case "http":
		if arg == "" {
			return "", "", errors.New("tenant: SLUICE_MEMBERSHIP=http:<url> needs an absolute http(s) URL, e.g. http:https://app.example/tenants/{tenant}/members/{user}")
		}
		return kind, arg, nil
	}
	// Only a short name is quoted: the spec may be a URL with a password,
	// or a secret pasted in the wrong variable.
	shown := ""
	if len(kind) <= 16 && strings.IndexFunc(kind, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0 && strings.Contains(spec, ":") {
		shown = fmt.Sprintf(" %q", kind)
	}
	return "", "", fmt.Errorf("tenant: unknown membership source%s: want token, file:<path>, postgres or http:<url>", shown)
}
