// Package auth holds FSO's security material: the identities `fso keys`
// issues (NATS nkeys, one per agent, controller and recorder), the
// subject permissions each role gets on the broker, and TLS settings for
// the broker and its clients.
//
// # Identities
//
// An identity is a NATS user nkey. Its seed stays with the component
// (a file readable only by its owner); its public key goes, with its role
// and name, into the broker's auth file ([File]), from which the broker
// builds one NATS user per identity with the permissions of [Permissions].
// NATS itself authenticates the client by a signed nonce: FSO adds no
// scheme of its own.
//
// # Roles
//
//   - [RoleAgent] named ID publishes only fso.events.ID.> and fso.diffs.ID,
//     puts only its status key status.ID, reads only its watermark
//     recorded.ID and its configuration agents.ID, and cannot consume or
//     read the FSO stream.
//   - [RoleRecorder] alone consumes the FSO stream (durable "recorder") and
//     writes watermarks and checkpoints; it cannot write configuration.
//   - [RoleController] alone writes the fso-config bucket; it cannot read
//     the FSO stream.
//
// Every identity subscribes only under its own inbox prefix, [Inbox] of
// its public key, so no client can read another's replies.
package auth
