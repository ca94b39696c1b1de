// Command sluice runs the Sluice multi-tenant Server-Sent Events gateway.
//
//	go run ./cmd/sluice --dev        # try it: generated secret, demo page
//	sluice --help                    # every SLUICE_* variable as a flag
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/outbox"
)

func main() {
	if err := run(); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sluice:", err)
		}
		os.Exit(2)
	}
}

func run() error {
	if len(os.Args) > 1 && os.Args[1] == "outbox" {
		return outbox.Command(context.Background(), os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
	}
	cfg, err := sluice.LoadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		return err
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
	log.Info("listening", "addr", ln.Addr().String(), "broker", cfg.Broker)
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
