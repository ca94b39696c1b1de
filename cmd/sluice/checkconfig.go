package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/auth"
)

// checkConfig is `sluice check-config [flags]`: the server's own LoadConfig
// and Validate on the environment and flags, then the key files read as the
// server reads them. It prints the configuration in effect with secrets
// redacted and returns nil when it is valid.
func checkConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := sluice.LoadConfig(args, getenv, stderr)
	if err != nil {
		return fmt.Errorf("check-config: %w", err)
	}
	if cfg.JWKSURL == "" && (cfg.JWTSecret != "" || cfg.JWTPublicKey != "" || cfg.APIKeysFile != "") {
		// The key files, as the server reads them (a JWKS is fetched only at start).
		a, err := auth.New(context.Background(), auth.Config{
			JWTSecret:        []byte(cfg.JWTSecret),
			JWTPublicKeyFile: cfg.JWTPublicKey,
			APIKeysFile:      cfg.APIKeysFile,
			Algorithms:       cfg.JWTAlgorithms,
			Issuer:           cfg.JWTIssuer,
			Audience:         cfg.JWTAudience,
			Leeway:           cfg.JWTLeeway,
		})
		if err != nil {
			return fmt.Errorf("check-config: %w", err)
		}
		_ = a.Close()
	}
	for _, s := range sluice.EffectiveSettings(args, getenv) {
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
