package server

import (
	"context"
	"log/slog"

	"github.com/sluicehq/sluice/broker"
	redisbroker "github.com/sluicehq/sluice/broker/redis"
	"github.com/sluicehq/sluice/metrics"
)

func newRedisBroker(ctx context.Context, cfg Config, o broker.Options, log *slog.Logger, m metrics.Recorder) (broker.Broker, error) {
	return redisbroker.New(ctx, redisbroker.Config{
		URL:     cfg.RedisURL,
		Prefix:  cfg.RedisPrefix,
		Options: o,
		Logger:  log,
		Metrics: m,
	})
}
