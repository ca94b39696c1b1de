// Command sluice runs the Sluice multi-tenant Server-Sent Events gateway.
//
//	go run ./cmd/sluice --dev        # try it: dev secret, demo tenant, dev console
//	sluice --help                    # every SLUICE_* variable as a flag
//	sluice token --user U --tenant T # mint a JWT (or --api-key) for a user
//	sluice check-config              # validate the configuration, print it redacted
//	sluice healthcheck               # GET /healthz on SLUICE_ADDR: exit 0 when alive
//	sluice version                   # version, commit and Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/outbox"
)

func main() {
	args, first := os.Args[1:], ""
	if len(args) > 0 {
		first = args[0]
	}
	var err error
	switch first {
	case "version", "--version", "-version":
		err = printVersion(os.Stdout, args[1:])
	case "token":
		err = token(args[1:], os.Getenv, os.Stdout, os.Stderr)
	case "check-config":
		err = checkConfig(args[1:], os.Getenv, os.Stdout, os.Stderr)
	case "healthcheck":
		if err := healthcheck(args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "sluice:", err)
			os.Exit(1) // unhealthy (a container runtime reserves 2)
		}
	case "outbox":
		err = outbox.Command(context.Background(), args[1:], os.Getenv, os.Stdout, os.Stderr)
	default:
		err = serve(args)
	}
	if errors.Is(err, flag.ErrHelp) {
		return // the usage was asked for and printed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(2)
	}
}

const commands = `Usage: sluice [flags]              run the gateway (flags below, each also a SLUICE_* variable)
       sluice token --user U --tenant T [--ttl D] [--claim k=v …] [--api-key]
       sluice check-config [flags]   validate the configuration and print it, secrets redacted
       sluice outbox init|sql        create the outbox table (SLUICE_POSTGRES_URL), or print its SQL
       sluice healthcheck            GET /healthz of the gateway on SLUICE_ADDR (for container health checks)
       sluice version                version, commit and Go version

`

func serve(args []string) error {
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		fmt.Fprint(os.Stderr, commands)
	}
	cfg, err := sluice.LoadConfig(args, os.Getenv, os.Stderr)
	if err != nil {
		return err
	}
	if cfg.Dev && cfg.DevStateFile == "" {
		cfg.DevStateFile, _ = sluice.DefaultDevStateFile() // none: new secret at every start
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	gw, err := sluice.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer gw.Close()
	log := sluice.NewLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("SLUICE_ADDR: %w", err)
	}
	if h := gw.MetricsHandler(); h != nil && cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("SLUICE_METRICS_ADDR: %w", err)
		}
		msrv := sluice.NewHTTPServer(h)
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	srv := sluice.NewHTTPServer(gw.Handler())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(sluice.ProblemListener(ln)) }() // net/http's own errors are problems too
	log.Info("listening", "addr", ln.Addr().String(), "broker", cfg.Broker, "version", versionString())
	if d, ok := gw.Dev(); ok {
		sluice.PrintDev(os.Stdout, sluice.BaseURL(ln.Addr().String()), d)
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the default way
	log.Info("draining", "streams", gw.Open(), "timeout", cfg.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := gw.Shutdown(dctx); err != nil {
		log.Warn("drain incomplete", "err", err, "streams", gw.Open())
	}
	// Streams have been told; finish in-flight publishes and close.
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("http shutdown incomplete", "err", err)
		_ = srv.Close()
	}
	log.Info("stopped")
	return nil
}
