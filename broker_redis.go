package sluice

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/metrics"
)

func newRedisBroker(ctx context.Context, cfg Config, o broker.Options, log *slog.Logger, m metrics.Recorder) (broker.Broker, error) {
	return nil, errors.New("SLUICE_BROKER=redis: the Redis broker is not wired yet")
}
