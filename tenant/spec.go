package tenant

import (
	"context"
	"fmt"
	"io"
	"strings"
)

type nopCloser struct{}

// Close does nothing.
func (nopCloser) Close() error { return nil }

// FromSpec builds the Membership named by a SLUICE_MEMBERSHIP value:
//
//	token          the token's tenant claim (Token); also the empty spec
//	file:<path>    a JSON file (NewFile)
//	postgres       a SQL query (NewPostgres with pg)
//	http:<url>     the application's backend (NewHTTP with h, h.URL = <url>)
//
// The io.Closer releases what the source holds (the Postgres pool); it is
// never nil. Anything else is an error naming the accepted forms.
func FromSpec(ctx context.Context, spec string, pg PostgresConfig, h HTTPConfig) (Membership, io.Closer, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "", "token":
		if arg != "" {
			return nil, nil, fmt.Errorf("tenant: SLUICE_MEMBERSHIP=token takes no argument")
		}
		return Token{}, nopCloser{}, nil
	case "file":
		if arg == "" {
			return nil, nil, fmt.Errorf("tenant: SLUICE_MEMBERSHIP=file:<path> needs a path")
		}
		f, err := NewFile(arg)
		if err != nil {
			return nil, nil, err
		}
		return f, nopCloser{}, nil
	case "postgres":
		if arg != "" {
			return nil, nil, fmt.Errorf("tenant: SLUICE_MEMBERSHIP=postgres takes no argument; the connection URL is configured separately")
		}
		p, err := NewPostgres(ctx, pg)
		if err != nil {
			return nil, nil, err
		}
		return p, p, nil
	case "http", "https":
		u := arg
		if kind == "https" { // "https://…" without the "http:" prefix
			u = spec
		} else if strings.HasPrefix(arg, "//") { // "http://…" itself
			u = spec
		}
		h.URL = u
		m, err := NewHTTP(h)
		if err != nil {
			return nil, nil, err
		}
		return m, nopCloser{}, nil
	}
	// The spec is not quoted whole: it may be a URL with a password.
	return nil, nil, fmt.Errorf("tenant: SLUICE_MEMBERSHIP: unknown source %q: want token, file:<path>, postgres or http:<url>", kind)
}
