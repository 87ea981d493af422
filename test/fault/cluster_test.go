package fault

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Three `fso broker` form a cluster (stream and buckets with 3 replicas);
// recorder and agent know all three. Mid-burst the FSO stream's leader is
// killed with SIGKILL: after re-election publishes resume and every event
// is recorded once.
func TestClusterLeaderKill9(t *testing.T) {
	const n = 3
	var client, route []string
	for range n {
		client = append(client, freePort(t))
		route = append(route, freePort(t))
	}
	s := &system{t: t}
	var urls []string
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, "nats://"+route[j])
			}
		}
		s.brokers = append(s.brokers, start(t, fmt.Sprintf("broker-%d", i), "broker",
			"--data", t.TempDir(), "--listen", client[i], "--name", fmt.Sprintf("b%d", i),
			"--cluster", route[i], "--routes", strings.Join(routes, ",")))
		urls = append(urls, "nats://"+client[i])
	}
	s.urls = strings.Join(urls, ",")
	s.startClients(t, filepath.Join(t.TempDir(), "audit"))

	_, js := jsConnect(t, s.urls)
	info := streamInfo(t, js)
	if info.Config.Replicas != 3 {
		t.Fatalf("stream has %d replicas, want 3", info.Config.Replicas)
	}
	w := startWriter(t, s.root, "burst", 20000, 2*time.Millisecond)
	waitGrowth(t, s.audit, 300)
	leader := streamInfo(t, js).Cluster.Leader
	var i int
	if _, err := fmt.Sscanf(leader, "b%d", &i); err != nil {
		t.Fatalf("stream leader %q", leader)
	}
	s.brokers[i].kill9(t)
	eventually(t, 60*time.Second, "a new stream leader", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "FSO")
		if err != nil {
			return false
		}
		l := st.CachedInfo().Cluster
		return l != nil && l.Leader != "" && l.Leader != leader
	})
	t.Logf("stream leader %s killed; new leader %s", leader, streamInfo(t, js).Cluster.Leader)
	waitGrowth(t, s.audit, 300)
	truth := w.paths()
	s.finish(t, "3-node cluster, stream leader kill -9 mid-burst", truth, 120*time.Second)
}

func streamInfo(t *testing.T, js jetstream.JetStream) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	eventually(t, 60*time.Second, "stream info", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "FSO")
		if err != nil {
			return false
		}
		info = st.CachedInfo()
		return info.Cluster != nil && info.Cluster.Leader != ""
	})
	return info
}
