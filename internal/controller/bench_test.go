package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/controller"
)

// BenchmarkApplyLatency measures, per agent, the time from Apply returning
// (and from Apply being called) until the agent's status in fso-agents
// shows the revision applied. Agents are in-process, each with its own
// connection. Run: go test -run XXX -bench ApplyLatency ./internal/controller
func BenchmarkApplyLatency(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			tb := startBroker(b)
			c := newController(b, tb)
			d := dirs(b, 2)
			for i := range n {
				startAgent(b, tb, fmt.Sprintf("a%d", i), nil, nil)
			}
			until(b, "every agent's first status", func() bool {
				sts, _ := c.Statuses(context.Background())
				return len(sts) == n
			})
			js := tb.connect(b)
			kv, err := js.KeyValue(b.Context(), broker.AgentsBucket)
			if err != nil {
				b.Fatal(err)
			}
			w, err := kv.Watch(b.Context(), "status.*", jetstream.UpdatesOnly())
			if err != nil {
				b.Fatal(err)
			}
			defer w.Stop()
			var fromReturn, fromCall []time.Duration
			for i := 0; b.Loop(); i++ {
				doc := fmt.Sprintf("defaults:\n  watch:\n    - path: %s\n", d[i%2])
				called := time.Now()
				plan, err := c.Apply(b.Context(), "fso.yaml", []byte(doc), controller.ApplyOptions{By: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				returned := time.Now()
				seen := map[string]bool{}
				timeout := time.After(wait)
				for len(seen) < n {
					select {
					case e := <-w.Updates():
						if e == nil {
							continue
						}
						var st controller.AgentStatus
						if json.Unmarshal(e.Value(), &st) != nil || st.ConfigApplied < plan.Revision || seen[st.ID] {
							continue
						}
						seen[st.ID] = true
						now := time.Now()
						fromReturn = append(fromReturn, max(0, now.Sub(returned)))
						fromCall = append(fromCall, now.Sub(called))
					case <-timeout:
						b.Fatalf("revision %d: %d of %d agents applied", plan.Revision, len(seen), n)
					}
				}
			}
			report(b, "return", fromReturn)
			report(b, "call", fromCall)
		})
	}
}

func report(b *testing.B, what string, ds []time.Duration) {
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "ms-p50-from-"+what)
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "ms-p99-from-"+what)
	b.Logf("from apply %s: n=%d median %v p99 %v max %v", what, len(ds), q(0.5), q(0.99), ds[len(ds)-1])
}
