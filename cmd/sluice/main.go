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
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/sluicehq/sluice/outbox"
	sluiceserver "github.com/sluicehq/sluice/server"
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
		err = sluiceserver.CheckConfig(args[1:], os.Getenv, os.Stdout, os.Stderr)
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

// serve runs the gateway until SIGINT or SIGTERM, then drains; a second
// signal kills the process the default way.
func serve(args []string) error {
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		fmt.Fprint(os.Stderr, commands)
	}
	cfg, err := sluiceserver.LoadConfig(args, os.Getenv, os.Stderr)
	if err != nil {
		return err
	}
	if cfg.Dev && cfg.DevStateFile == "" {
		cfg.DevStateFile, _ = sluiceserver.DefaultDevStateFile() // none: new secret at every start
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	return sluiceserver.Run(ctx, cfg, os.Stdout, versionString())
}
