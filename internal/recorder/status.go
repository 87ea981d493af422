package recorder

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StatusKey is the fso-agents key of the recorder's status.
func StatusKey(name string) string { return "recorder." + name }

// Status is what the recorder publishes about itself at StatusKey: how
// many records it wrote, how many messages it rejected (each one an
// alert: see the log line "alert: message rejected"), and how many fsyncs
// of the audit log that took (written ÷ syncs is the records per fsync).
type Status struct {
	Name      string    `json:"name"`
	Written   int64     `json:"written"`
	Rejected  int64     `json:"rejected"`
	Syncs     int64     `json:"syncs"`
	UpdatedAt time.Time `json:"updated_at"`
}

// statusEvery is the least time between two status puts, except the last.
const statusEvery = time.Second

// flushStatus puts the status when its counters changed since the last put.
func (r *Recorder) flushStatus(ctx context.Context, kv jetstream.KeyValue, final bool) {
	r.statsMu.Lock()
	st := Status{Name: r.cfg.Checkpoints.Name, Written: r.written, Rejected: r.rejected, Syncs: r.syncs}
	changed := st.Written != r.statusPut.Written || st.Rejected != r.statusPut.Rejected || st.Syncs != r.statusPut.Syncs ||
		r.statusPut.Name == ""
	r.statsMu.Unlock()
	// At most every statusEvery while the counters move (a put costs the
	// broker a stored message and its watchers a delivery), and at once
	// when the recorder stops.
	if !changed || (!final && time.Since(r.statusPut.UpdatedAt) < statusEvery) {
		return
	}
	st.UpdatedAt = time.Now().UTC()
	b, _ := json.Marshal(st)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := kv.Put(pctx, StatusKey(st.Name), b); err != nil {
		if ctx.Err() == nil { // else stopping: the final put follows
			r.logger.Warn("publish recorder status", "err", err)
		}
		return
	}
	r.statsMu.Lock()
	r.statusPut = st
	r.statsMu.Unlock()
}
