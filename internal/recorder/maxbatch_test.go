package recorder_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/broker/brokertest"
	"github.com/fso-project/fso/internal/recorder"
)

// MaxBatch bounds the records of one fsync, not the messages: twenty
// bundles of eight records waiting in the stream take at least ten fsyncs
// with MaxBatch 10 (two bundles at most per batch), where counting
// messages writes them in a few (3 when that was tried). The status says
// how many fsyncs.
func TestMaxBatchCountsRecords(t *testing.T) {
	b := brokertest.Start(t)
	js := b.JetStream(t)
	dir := t.TempDir()
	for i := range uint64(20) {
		s := 8*i + 1
		publish(t, js, bundle("a", s, s+1, s+2, s+3, s+4, s+5, s+6, s+7))
	}
	startWith(t, b, recorder.Config{AuditDir: dir, MaxBatch: 10})
	waitLines(t, dir, 160)
	kv, err := js.KeyValue(t.Context(), broker.AgentsBucket)
	if err != nil {
		t.Fatal(err)
	}
	var st recorder.Status
	for deadline := time.Now().Add(20 * time.Second); st.Written != 160; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("recorder status %+v, want written 160", st)
		}
		if e, err := kv.Get(t.Context(), recorder.StatusKey("recorder")); err == nil {
			json.Unmarshal(e.Value(), &st)
		}
	}
	if st.Syncs < 10 || st.Syncs > st.Written || st.Rejected != 0 {
		t.Fatalf("status %+v: want 160 records in at least 10 fsyncs, none rejected", st)
	}
	t.Logf("160 records in %d fsyncs", st.Syncs)
}
