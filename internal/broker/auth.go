package broker

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/fso-project/fso/internal/auth"
	"github.com/fso-project/fso/internal/event"
)

// Permissions are the subjects an identity may publish to and subscribe
// to. Deny wins over Allow.
type Permissions struct {
	PublishAllow, PublishDeny, SubscribeAllow []string
}

// js is a JetStream API subject.
func js(s string) string { return "$JS.API." + s }

// noAdmin are the JetStream API calls no FSO client needs: creating,
// changing, deleting, purging, snapshotting or restoring streams, and the
// cluster's administration. Only the broker's own in-process connection
// makes them (Setup).
var noAdmin = []string{
	js("STREAM.CREATE.>"), js("STREAM.UPDATE.>"), js("STREAM.DELETE.>"),
	js("STREAM.MSG.DELETE.>"), js("STREAM.SNAPSHOT.>"), js("STREAM.RESTORE.>"),
	js("STREAM.PEER.>"), js("STREAM.LEADER.>"), js("CONSUMER.LEADER.>"),
	js("META.>"), js("SERVER.>"), js("ACCOUNT.>"),
	js("STREAM.PURGE." + Stream), js("STREAM.PURGE.KV_" + ConfigBucket), js("STREAM.PURGE.KV_" + AgentsBucket),
}

// noStream are the calls that read the FSO stream: every consumer of it,
// and direct or stored message gets.
var noStream = []string{
	js("CONSUMER.*." + Stream), js("CONSUMER.*." + Stream + ".>"),
	js("CONSUMER.*.*." + Stream), js("CONSUMER.*.*." + Stream + ".>"),
	js("STREAM.MSG.GET." + Stream), js("DIRECT.GET." + Stream), js("DIRECT.GET." + Stream + ".>"),
	"$JS.ACK." + Stream + ".>",
}

// PermissionsOf returns what id may do. An agent's list is an allow list
// of exactly its own subjects; the recorder and the controller get the
// JetStream API minus administration, minus what belongs to the other.
func PermissionsOf(id auth.Identity) Permissions {
	inbox := auth.Inbox(id.Nkey) + ".>"
	switch id.Role {
	case auth.RoleAgent:
		a := id.Name
		kvAgents, kvConfig := "$KV."+AgentsBucket+".", "$KV."+ConfigBucket+"."
		return Permissions{
			PublishAllow: []string{
				event.EventsPrefix + a + ".>", event.DiffsPrefix + a,
				kvAgents + "status." + a,
				js("STREAM.INFO.KV_" + AgentsBucket), js("STREAM.INFO.KV_" + ConfigBucket), js("STREAM.INFO.OBJ_" + DiffsBucket),
				// Reads of its own keys only: direct gets name the key
				// in the subject, and a watch's consumer its filter.
				js("DIRECT.GET.KV_" + AgentsBucket + "." + kvAgents + "recorded." + a),
				js("DIRECT.GET.KV_" + AgentsBucket + "." + kvAgents + "status." + a),
				js("DIRECT.GET.KV_" + ConfigBucket + "." + kvConfig + "agents." + a),
				js("CONSUMER.CREATE.KV_" + AgentsBucket + ".*." + kvAgents + "recorded." + a),
				js("CONSUMER.CREATE.KV_" + ConfigBucket + ".*." + kvConfig + "agents." + a),
				// A stopped watch deletes its ephemeral consumer.
				js("CONSUMER.DELETE.KV_" + AgentsBucket + ".*"), js("CONSUMER.DELETE.KV_" + ConfigBucket + ".*"),
				"$JS.FC.KV_" + AgentsBucket + ".>", "$JS.FC.KV_" + ConfigBucket + ".>",
				// Large diffs: content-addressed objects the recorder
				// checks against their sha256.
				"$O." + DiffsBucket + ".>",
				js("DIRECT.GET.OBJ_" + DiffsBucket + ".$O." + DiffsBucket + ".M.*"),
			},
			SubscribeAllow: []string{inbox},
		}
	case auth.RoleRecorder:
		return Permissions{
			PublishAllow: []string{
				js(">"), "$JS.ACK." + Stream + "." + RecorderDurable + ".>",
				"$KV." + AgentsBucket + ".recorded.*", "$KV." + AgentsBucket + ".checkpoint.*", "$KV." + AgentsBucket + ".recorder.*",
				"$O." + DiffsBucket + ".>",
				"$JS.FC.>",
			},
			PublishDeny: append(append([]string{}, noAdmin...),
				// The recorder's durable is the only consumer it may use.
				js("CONSUMER.CREATE."+Stream), js("CONSUMER.DURABLE.CREATE."+Stream+".>"), js("CONSUMER.DELETE."+Stream+".>"),
			),
			SubscribeAllow: []string{inbox},
		}
	case auth.RoleController:
		return Permissions{
			PublishAllow: []string{
				js(">"), "$KV." + ConfigBucket + ".>", event.ConfigSubject, "$JS.FC.>",
			},
			PublishDeny:    append(append([]string{}, noAdmin...), noStream...),
			SubscribeAllow: []string{inbox},
		}
	}
	return Permissions{} // nothing
}

func (p Permissions) server() *server.Permissions {
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.PublishAllow, Deny: p.PublishDeny},
		Subscribe: &server.SubjectPermission{Allow: p.SubscribeAllow},
	}
	if len(p.SubscribeAllow) == 0 {
		sp.Subscribe.Deny = []string{">"}
	}
	if len(p.PublishAllow) == 0 {
		sp.Publish.Deny = []string{">"}
	}
	return sp
}

// applyAuth makes opts require an identity of f from every client, and
// admits the broker's own in-process connection (Setup, fso up) as an
// unrestricted user that no network client can use.
func applyAuth(opts *server.Options, f *auth.File) (internalUser, internalPass string) {
	for _, id := range f.Identities {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{
			Nkey:        id.Nkey,
			Permissions: PermissionsOf(id).server(),
			AllowedConnectionTypes: map[string]struct{}{
				jwt.ConnectionTypeStandard: {}, jwt.ConnectionTypeWebsocket: {},
			},
		})
	}
	var b [24]byte
	rand.Read(b[:])
	internalUser, internalPass = "fso-broker-internal", hex.EncodeToString(b[:])
	opts.Users = append(opts.Users, &server.User{
		Username:               internalUser,
		Password:               internalPass,
		AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}},
	})
	return internalUser, internalPass
}

// loadAuth reads the auth file named by --auth.
func loadAuth(path string) (*auth.File, error) {
	f, err := auth.Load(path)
	if err != nil {
		return nil, fmt.Errorf("broker: --auth: %w", err)
	}
	return f, nil
}
