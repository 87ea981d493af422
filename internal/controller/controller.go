// Package controller writes agent configuration into the fso-config bucket
// and reads agent status from fso-agents: Apply (with compare-and-set on the
// document's KV revision, so concurrent applies cannot overwrite each other
// silently), DryRun, Get, Agents and Rollback.
//
// The document is stored as applied at key [agentconfig.DocKey]; its KV
// revision is the configuration revision, and the bucket's history
// (64 revisions) is what Rollback restores from. The rendering for each
// agent known from its status, named by ApplyOptions.Agents or by a literal
// id selector is stored at agents.<id>, the only configuration key an
// agent reads; an agent never seen and matched only by a glob or labels is
// configured by the next apply. Every applied revision
// is also published as a kind "config" audit record on
// [event.ConfigSubject].
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/agentconfig"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/event"
)

// ErrConflict is returned when the configuration changed between reading
// and writing it.
var ErrConflict = errors.New("controller: configuration changed concurrently")

// Controller reads and writes configuration through one JetStream client.
type Controller struct {
	js     jetstream.JetStream
	config jetstream.KeyValue
	agents jetstream.KeyValue
}

// New opens the buckets.
func New(ctx context.Context, js jetstream.JetStream) (*Controller, error) {
	cfg, err := js.KeyValue(ctx, broker.ConfigBucket)
	if err != nil {
		return nil, fmt.Errorf("controller: open bucket %s: %w", broker.ConfigBucket, err)
	}
	ag, err := js.KeyValue(ctx, broker.AgentsBucket)
	if err != nil {
		return nil, fmt.Errorf("controller: open bucket %s: %w", broker.AgentsBucket, err)
	}
	return &Controller{js: js, config: cfg, agents: ag}, nil
}

// AgentStatus is what the controller reads of an agent's status (key
// status.<id> in fso-agents; written by the agent).
type AgentStatus struct {
	ID             string            `json:"id"`
	Host           string            `json:"host"`
	Labels         map[string]string `json:"labels,omitempty"`
	Online         bool              `json:"online"`
	Heartbeat      time.Time         `json:"heartbeat"`
	Roots          []RootStatus      `json:"roots"`
	Watches        int               `json:"watches"`
	Observed       uint64            `json:"observed"`
	Recorded       uint64            `json:"recorded"`
	SpoolEntries   int               `json:"spool_entries"`
	LastError      string            `json:"last_error,omitempty"`
	EventsPerSec   float64           `json:"events_per_sec"`
	AllowRoots     []string          `json:"allow_roots,omitempty"`
	ConfigApplied  uint64            `json:"config_revision"`
	ConfigDesired  uint64            `json:"config_desired"`
	ConfigRejected *Rejection        `json:"config_rejected,omitempty"`
}

// RootStatus is one root in an AgentStatus.
type RootStatus struct {
	Path     string `json:"path"`
	Watching bool   `json:"watching"`
	Error    string `json:"error,omitempty"`
}

// Rejection is a revision an agent could not apply, and why.
type Rejection struct {
	Revision uint64 `json:"revision"`
	Reason   string `json:"reason"`
}

// Statuses returns every agent's status, by id.
func (c *Controller) Statuses(ctx context.Context) ([]AgentStatus, error) {
	lister, err := c.agents.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("controller: list agents: %w", err)
	}
	var out []AgentStatus
	for k := range lister.Keys() {
		if !strings.HasPrefix(k, "status.") {
			continue
		}
		e, err := c.agents.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		var st AgentStatus
		if err := json.Unmarshal(e.Value(), &st); err != nil || st.ID == "" {
			continue
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b AgentStatus) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Current returns the applied document and its revision; revision 0 when
// nothing was applied yet.
func (c *Controller) Current(ctx context.Context) ([]byte, uint64, error) {
	e, err := c.config.Get(ctx, agentconfig.DocKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("controller: read configuration: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

// Plan is what Apply did or, for a dry run, would do.
type Plan struct {
	Revision uint64      `json:"revision"`          // the new revision (0 for a dry run)
	Previous uint64      `json:"previous_revision"` // the revision it replaces (0: none)
	SHA256   string      `json:"sha256"`
	Agents   []AgentPlan `json:"agents"`
}

// AgentPlan is the change for one known agent.
type AgentPlan struct {
	ID      string   `json:"id"`
	Online  bool     `json:"online"`
	Changes []string `json:"changes"` // empty: unchanged
}

// ApplyOptions are the knobs of Apply.
type ApplyOptions struct {
	By     string // who applies, recorded in the audit record; required
	DryRun bool   // validate and plan, write nothing
	// IfRevision, when set, makes Apply fail with ErrConflict unless the
	// current revision is this one.
	IfRevision uint64
	// Agents are rendered for even without a status yet (fso up names its
	// own agent, which may not have reported when it applies).
	Agents []AgentRef
	action string
	from   uint64
}

// AgentRef names an agent and the labels it announces.
type AgentRef struct {
	ID     string
	Labels map[string]string
}

// Apply validates src (name is the file name for errors), checks it against
// every known agent's --allow-root list, and writes it with compare-and-set
// on the current revision. It writes nothing when anything is invalid, and
// fails with ErrConflict when another apply came first.
func (c *Controller) Apply(ctx context.Context, name string, src []byte, o ApplyOptions) (Plan, error) {
	doc, err := agentconfig.Parse(name, src)
	if err != nil {
		return Plan{}, err
	}
	oldSrc, prev, err := c.Current(ctx)
	if err != nil {
		return Plan{}, err
	}
	if o.IfRevision != 0 && o.IfRevision != prev {
		return Plan{}, fmt.Errorf("%w: revision is %d, not %d", ErrConflict, prev, o.IfRevision)
	}
	var old *agentconfig.Document
	if oldSrc != nil {
		old, _ = agentconfig.Parse("revision", oldSrc) // a stored revision was valid
	}
	sts, err := c.Statuses(ctx)
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{Previous: prev, SHA256: agentconfig.DocHash(src)}
	rendered := map[string]agentconfig.Agent{}
	// Agents read only their own rendering (agents.<id>), so one is written
	// for every agent that has reported, every agent named, and every id a
	// selector names literally. An agent matched only by a glob or labels
	// that has never reported gets its rendering at the next apply.
	known := map[string]bool{}
	for _, st := range sts {
		known[st.ID] = true
	}
	for _, ref := range o.Agents {
		if !known[ref.ID] {
			sts = append(sts, AgentStatus{ID: ref.ID, Labels: ref.Labels})
			known[ref.ID] = true
		}
	}
	for _, ov := range doc.Agents {
		if id := ov.Match.ID; id != "" && !strings.ContainsAny(id, "*?[\\") && !known[id] && event.ValidAgentID(id) == nil {
			sts = append(sts, AgentStatus{ID: id})
			known[id] = true
		}
	}
	for _, st := range sts {
		a := doc.Render(st.ID, st.Labels)
		if err := a.Check(); err != nil {
			return Plan{}, fmt.Errorf("%s: agent %s: %w", name, st.ID, err)
		}
		if err := a.CheckAllowed(st.AllowRoots); err != nil {
			return Plan{}, fmt.Errorf("%s: agent %s: %w", name, st.ID, err)
		}
		var before agentconfig.Agent
		if old != nil {
			before = old.Render(st.ID, st.Labels)
		}
		rendered[st.ID] = a
		plan.Agents = append(plan.Agents, AgentPlan{ID: st.ID, Online: st.Online, Changes: Changes(before, a)})
	}
	if o.DryRun {
		return plan, nil
	}
	var rev uint64
	if prev == 0 {
		rev, err = c.config.Create(ctx, agentconfig.DocKey, src)
	} else {
		rev, err = c.config.Update(ctx, agentconfig.DocKey, src, prev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err) {
			return Plan{}, fmt.Errorf("%w: revision %d was replaced while applying; check `fso controller get` and apply again", ErrConflict, prev)
		}
		return Plan{}, fmt.Errorf("controller: write configuration: %w", err)
	}
	plan.Revision = rev
	var ids []string
	for id, a := range rendered {
		a.Revision, a.DocSHA256 = rev, plan.SHA256
		data, _ := json.Marshal(a)
		if _, err := c.config.Put(ctx, agentconfig.AgentPrefix+id, data); err != nil {
			return plan, fmt.Errorf("controller: revision %d written; store rendering of %s: %w", rev, id, err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	action := o.action
	if action == "" {
		action = "apply"
	}
	rec := event.Config{Revision: rev, Action: action, By: o.By, SHA256: plan.SHA256, Agents: ids,
		AppliedAt: time.Now().UTC(), FromRevision: o.from}
	if err := c.publishRecord(ctx, rec); err != nil {
		return plan, fmt.Errorf("controller: revision %d written, but its audit record was not: %w", rev, err)
	}
	return plan, nil
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func (c *Controller) publishRecord(ctx context.Context, rec event.Config) error {
	data, err := rec.Marshal()
	if err != nil {
		return err
	}
	m := nats.NewMsg(event.ConfigSubject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, event.ConfigMsgID(rec.Revision))
	var last error
	for range 5 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, last = c.js.PublishMsg(pctx, m, jetstream.WithExpectStream(broker.Stream))
		cancel()
		if last == nil || ctx.Err() != nil {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

// Rollback applies the document of revision rev again, as a new revision.
func (c *Controller) Rollback(ctx context.Context, rev uint64, o ApplyOptions) (Plan, error) {
	e, err := c.config.GetRevision(ctx, agentconfig.DocKey, rev)
	if err != nil {
		return Plan{}, fmt.Errorf("controller: revision %d: %w (the bucket keeps the last 64 revisions; see `fso controller history`)", rev, err)
	}
	o.action, o.from = "rollback", rev
	return c.Apply(ctx, fmt.Sprintf("revision %d", rev), e.Value(), o)
}

// Revision is one stored revision of the document.
type Revision struct {
	Revision uint64    `json:"revision"`
	Created  time.Time `json:"created"`
	SHA256   string    `json:"sha256"`
}

// History lists the stored revisions of the document, oldest first.
func (c *Controller) History(ctx context.Context) ([]Revision, error) {
	es, err := c.config.History(ctx, agentconfig.DocKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("controller: history: %w", err)
	}
	var out []Revision
	for _, e := range es {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		out = append(out, Revision{Revision: e.Revision(), Created: e.Created().UTC(), SHA256: agentconfig.DocHash(e.Value())})
	}
	return out, nil
}

// Effective is one agent's configuration as Get returns it.
type Effective struct {
	ID     string            `json:"id"`
	Known  bool              `json:"known"` // the agent has reported a status
	Config agentconfig.Agent `json:"config"`
}

// Get renders the current document for agent id (labels from its status).
// It returns revision 0 and an empty configuration when nothing is applied.
func (c *Controller) Get(ctx context.Context, id string) (Effective, error) {
	src, rev, err := c.Current(ctx)
	if err != nil || rev == 0 {
		return Effective{ID: id}, err
	}
	doc, err := agentconfig.Parse(fmt.Sprintf("revision %d", rev), src)
	if err != nil {
		return Effective{}, err
	}
	eff := Effective{ID: id}
	var labels map[string]string
	if e, err := c.agents.Get(ctx, "status."+id); err == nil {
		var st AgentStatus
		if json.Unmarshal(e.Value(), &st) == nil {
			labels, eff.Known = st.Labels, true
		}
	}
	eff.Config = doc.Render(id, labels)
	eff.Config.Revision, eff.Config.DocSHA256 = rev, agentconfig.DocHash(src)
	return eff, nil
}

// Changes describes, line by line, how an agent's configuration changes
// from before to after.
func Changes(before, after agentconfig.Agent) []string {
	var out []string
	old := map[string]agentconfig.Root{}
	for _, r := range before.Watch {
		old[r.Path] = r
	}
	for _, r := range after.Watch {
		o, ok := old[r.Path]
		delete(old, r.Path)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("+ watch %s%s", r.Path, describe(r)))
		case !sameRoot(o, r):
			out = append(out, fmt.Sprintf("~ watch %s%s (was%s)", r.Path, describe(r), describe(o)))
		}
	}
	for _, r := range before.Watch {
		if _, gone := old[r.Path]; gone {
			out = append(out, "- watch "+r.Path)
		}
	}
	if !slices.Equal(before.Important, after.Important) {
		out = append(out, fmt.Sprintf("~ important %v (was %v)", after.Important, before.Important))
	}
	if !slices.Equal(before.NoDiff, after.NoDiff) {
		out = append(out, fmt.Sprintf("~ nodiff %v (was %v)", after.NoDiff, before.NoDiff))
	}
	if before.HashLimit != after.HashLimit {
		out = append(out, fmt.Sprintf("~ hash_limit %d (was %d)", after.HashLimit, before.HashLimit))
	}
	if before.Debounce != after.Debounce {
		out = append(out, fmt.Sprintf("~ debounce %q (was %q)", after.Debounce, before.Debounce))
	}
	return out
}

func sameRoot(a, b agentconfig.Root) bool {
	return a.Recursive == b.Recursive && slices.Equal(a.Include, b.Include) &&
		slices.Equal(a.Exclude, b.Exclude) && slices.Equal(a.Events, b.Events)
}

func describe(r agentconfig.Root) string {
	var b strings.Builder
	if !r.Recursive {
		b.WriteString(" non-recursive")
	}
	if len(r.Include) > 0 {
		fmt.Fprintf(&b, " include=%v", r.Include)
	}
	if len(r.Exclude) > 0 {
		fmt.Fprintf(&b, " exclude=%v", r.Exclude)
	}
	if len(r.Events) > 0 {
		fmt.Fprintf(&b, " events=%v", r.Events)
	}
	return b.String()
}
