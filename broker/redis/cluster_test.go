package redis_test

import (
	"testing"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/brokertest"
	"github.com/sluicehq/sluice/internal/redistest"
)

// clusterOf starts a 3-master Redis Cluster of the test's own and returns its
// URL. It needs SLUICE_TEST_REDIS_URL like the other Redis tests (so that a
// plain `go test ./...` starts no processes) and redis-server on PATH.
func clusterOf(t *testing.T) string {
	testURL(t)
	return redistest.StartCluster(t, 3).URL()
}

// The whole conformance suite against a Redis Cluster: every command and
// script must stay within one hash slot.
func TestConformanceCluster(t *testing.T) {
	url := clusterOf(t)
	brokertest.Run(t, func(t *testing.T, o broker.Options) broker.Broker {
		return newBroker(t, url, "sluicetest:"+random()+":", o)
	})
}

func TestConformanceSharedCluster(t *testing.T) {
	url := clusterOf(t)
	brokertest.RunShared(t, func(t *testing.T, o broker.Options) (broker.Broker, broker.Broker) {
		p := "sluicetest:" + random() + ":"
		return newBroker(t, url, p, o), newBroker(t, url, p, o)
	})
}
