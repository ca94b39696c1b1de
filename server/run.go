package server

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
	"github.com/sluicehq/sluice/auth/jwtauth"
)

// Run serves cfg until ctx is done, then drains (protocol.md §6
// shutting-down) for at most cfg.DrainTimeout and returns. It logs to
// stderr as cfg says; with Dev, it prints the --dev banner to stdout.
// version is logged at start. opts are New's: a command of one's own that
// serves a broker of its own passes WithBroker.
func Run(ctx context.Context, cfg Config, stdout io.Writer, version string, opts ...Option) error {
	s, err := New(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	log := s.log

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("SLUICE_ADDR: %w", err)
	}
	if h := s.MetricsHandler(); h != nil && cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("SLUICE_METRICS_ADDR: %w", err)
		}
		msrv := sluice.NewHTTPServer(h)
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	srv := sluice.NewHTTPServer(s.Handler())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(sluice.ProblemListener(ln)) }() // net/http's own errors are problems too
	log.Info("listening", "addr", ln.Addr().String(), "broker", cfg.Broker, "version", version)
	if d, ok := s.Dev(); ok {
		PrintDev(stdout, BaseURL(ln.Addr().String()), d)
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "streams", s.OpenStreams(), "timeout", cfg.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := s.Shutdown(dctx); err != nil {
		log.Warn("drain incomplete", "err", err, "streams", s.OpenStreams())
	}
	// Streams have been told; finish in-flight publishes and close.
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("http shutdown incomplete", "err", err)
		_ = srv.Close()
	}
	log.Info("stopped")
	return nil
}

// CheckConfig is `sluice check-config [flags]`: LoadConfig and Validate on
// the environment and flags, then the key files read as New reads them. It
// prints the configuration in effect with secrets redacted and returns nil
// when it is valid.
func CheckConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(args, getenv, stderr)
	if err != nil {
		return fmt.Errorf("check-config: %w", err)
	}
	if cfg.JWKSURL == "" && (cfg.JWTSecret != "" || cfg.JWTPublicKey != "" || cfg.APIKeysFile != "") {
		// The key files, as the server reads them (a JWKS is fetched only at start).
		ac, err := authConfig(context.Background(), cfg)
		if err != nil {
			return fmt.Errorf("check-config: %w", err)
		}
		a, err := auth.New(context.Background(), ac)
		if err != nil {
			return fmt.Errorf("check-config: %w", err)
		}
		_ = a.Close()
	}
	for _, s := range EffectiveSettings(args, getenv) {
		note := ""
		if s.Default {
			note = "  # default"
		}
		fmt.Fprintf(stdout, "%s=%s%s\n", s.Env, s.Value, note)
	}
	if cfg.Dev {
		fmt.Fprintln(stdout, "--dev: development mode (dev secret, dev publisher key, dev console at /)")
	}
	fmt.Fprintln(stderr, "configuration is valid")
	return nil
}

// authConfig is how cfg's callers authenticate (protocol.md §2): a JWT
// verifier when a key is configured (a JWKS is fetched here), API keys when
// a file is. The caller closes the verifier (auth.New's Authenticator does).
func authConfig(ctx context.Context, cfg Config) (auth.Config, error) {
	ac := auth.Config{Leeway: cfg.JWTLeeway, APIKeysFile: cfg.APIKeysFile}
	jc := jwtauth.Config{
		Secret:        []byte(cfg.JWTSecret),
		PublicKeyFile: cfg.JWTPublicKey,
		JWKSURL:       cfg.JWKSURL,
		Algorithms:    cfg.JWTAlgorithms,
		Issuer:        cfg.JWTIssuer,
		Audience:      cfg.JWTAudience,
		Leeway:        cfg.JWTLeeway,
	}
	if jc.HasKey() || len(jc.Algorithms) > 0 { // algorithms without a key: jwtauth.New says so
		v, err := jwtauth.New(ctx, jc)
		if err != nil {
			return ac, err
		}
		ac.Tokens = v
	}
	return ac, nil
}
