package recorder

import (
	"encoding/json"
	"fmt"

	"github.com/fso-project/fso/internal/event"
)

// configRevision reads the revision of a config record from the audit log.
func configRevision(raw []byte) (uint64, error) {
	var c struct {
		Revision uint64 `json:"revision"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return 0, fmt.Errorf("config record: %w", err)
	}
	return c.Revision, nil
}

// configSeen reports whether the config record of rev is already in the log
// (or in the batch being written), and marks it so.
func (r *Recorder) configSeen(rec event.Record, added map[uint64]bool) bool {
	if r.configs == nil {
		r.configs = map[uint64]bool{}
	}
	rev := rec.Config.Revision
	if r.configs[rev] {
		return true
	}
	r.configs[rev] = true
	added[rev] = true
	return false
}
