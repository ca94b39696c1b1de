// Command outbox-pgx publishes through the Sluice outbox with pgx: the
// event is inserted in the same transaction as the change it announces, so
// both commit or neither. Run with DATABASE_URL, TENANT and SCAN set.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// publish queues an event in tx; Sluice publishes it once tx commits.
func publish(ctx context.Context, tx pgx.Tx, channel, event string, data any) error {
	_, err := tx.Exec(ctx, "INSERT INTO sluice_outbox (channel, event, data) VALUES ($1, $2, $3)", channel, event, data)
	return err
}

func main() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	tenant := os.Getenv("TENANT")
	scan, _ := strconv.Atoi(os.Getenv("SCAN"))
	ch := fmt.Sprintf("scan-progress:%s:%d", tenant, scan)

	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// SET LOCAL for row-level security: the tenant this transaction acts for.
		if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenant); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE scans SET progress = 40 WHERE id = $1", scan); err != nil {
			return err
		}
		return publish(ctx, tx, ch, "scan.progress", map[string]int{"scan": scan, "progress": 40})
	})
	if err != nil {
		log.Fatal(err)
	}

	// A transaction that rolls back publishes nothing.
	errFailed := errors.New("the scan failed")
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := publish(ctx, tx, ch, "scan.progress", map[string]int{"progress": 999}); err != nil {
			return err
		}
		return errFailed
	})
	if !errors.Is(err, errFailed) {
		log.Fatal(err)
	}
}
