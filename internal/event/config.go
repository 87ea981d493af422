package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// KindConfig is the kind of a configuration change record.
const KindConfig = "config"

// ConfigSubject carries the controller's configuration change records.
const ConfigSubject = "fso.config"

// Config records that a configuration revision was applied by the
// controller, so the audit trail shows when monitoring scope changed.
type Config struct {
	Kind      string    `json:"kind"`
	Revision  uint64    `json:"revision"`
	Action    string    `json:"action"` // apply or rollback
	By        string    `json:"by"`     // user@host of the controller
	SHA256    string    `json:"sha256"` // of the document's bytes
	Agents    []string  `json:"agents,omitempty"`
	AppliedAt time.Time `json:"applied_at"`
	// FromRevision is the revision a rollback restored.
	FromRevision uint64 `json:"from_revision,omitempty"`
}

// Marshal encodes c with its kind set.
func (c Config) Marshal() ([]byte, error) { c.Kind = KindConfig; return json.Marshal(c) }

// ConfigMsgID is the Nats-Msg-Id of the record of revision rev, so a retry
// is deduplicated by the stream.
func ConfigMsgID(rev uint64) string { return fmt.Sprintf("config:%d", rev) }

func decodeConfig(data []byte) (Record, error) {
	var c Config
	if err := strict(data, &c); err != nil {
		return Record{}, err
	}
	if c.Kind != KindConfig || c.Revision == 0 || c.By == "" || len(c.SHA256) != 64 || c.AppliedAt.IsZero() {
		return Record{}, fmt.Errorf("config record needs kind, revision, by, sha256 and applied_at")
	}
	js, err := c.Marshal()
	if err != nil {
		return Record{}, err
	}
	return Record{Kind: KindConfig, JSON: js, Config: &c}, nil
}
