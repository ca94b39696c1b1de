package outbox

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// Command runs `sluice outbox <init|sql>`: init creates the outbox in the
// database of SLUICE_POSTGRES_URL (or --postgres-url), sql prints the
// migration instead, for those who apply migrations themselves. The table is
// SLUICE_OUTBOX_TABLE (or --outbox-table), DefaultTable by default.
func Command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice outbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("postgres-url", getenv("SLUICE_POSTGRES_URL"), "PostgreSQL URL ($SLUICE_POSTGRES_URL)")
	def := getenv("SLUICE_OUTBOX_TABLE")
	if def == "" {
		def = DefaultTable
	}
	table := fs.String("outbox-table", def, "outbox table ($SLUICE_OUTBOX_TABLE)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sluice outbox init [flags]   create the outbox table, its dead-letter table and trigger")
		fmt.Fprintln(stderr, "       sluice outbox sql [flags]    print that migration")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return errors.New("outbox: say init or sql")
	}
	sub := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("outbox: unexpected argument %q", fs.Arg(0))
	}
	switch sub {
	case "sql":
		q, err := SQL(*table)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, q)
		return err
	case "init":
		if *url == "" {
			return errors.New("outbox init: set SLUICE_POSTGRES_URL (or --postgres-url) to the database to create the outbox in")
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := Init(ctx, *url, *table); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "outbox %s ready (dead letters in %s_dead)\n", *table, *table)
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("outbox: unknown command %q (init or sql)", sub)
	}
}
