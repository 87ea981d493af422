package recorder

import (
	"encoding/json"
	"fmt"

	"github.com/fso-project/fso/internal/event"
)

func gapOf(raw []byte) (*event.Gap, error) {
	var g event.Gap
	if err := json.Unmarshal(raw, &g); err != nil {
		return nil, fmt.Errorf("gap record: %w", err)
	}
	return &g, nil
}
