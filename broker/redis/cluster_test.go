package redis_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/brokertest"
	"github.com/sluicehq/sluice/internal/redistest"
	"github.com/sluicehq/sluice/internal/testutil"
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

// Readiness follows what works: a cluster that lost a master (its slots
// unserved) is not ready, although the remaining nodes answer PING.
func TestClusterReadyFollowsState(t *testing.T) {
	testURL(t)
	c := redistest.StartCluster(t, 3)
	b := newBroker(t, c.URL(), "sluicetest:"+random()+":", broker.Options{})
	if err := b.Ready(t.Context()); err != nil {
		t.Fatalf("Ready on a healthy cluster: %v", err)
	}
	c.Nodes[2].Kill()
	testutil.Eventually(t, 15*time.Second, "Ready to fail once a master is gone", func() bool {
		return errors.Is(b.Ready(t.Context()), broker.ErrUnavailable)
	})
}
