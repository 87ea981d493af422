package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/auditlog"
	"github.com/fso-project/fso/internal/broker"
	"github.com/fso-project/fso/internal/recorder"
)

// keyFlags are the recorder's signing-key flags.
type keyFlags struct {
	path string
}

func addKeyFlags(cmd *cobra.Command, k *keyFlags) {
	cmd.Flags().StringVar(&k.path, "key", "", "ed25519 key that signs the checkpoints, created (0600) if missing (default: recorder.key beside the audit dir, AUDIT_DIR/../recorder.key)")
}

// file is the key's path for the audit log in auditDir.
func (k *keyFlags) file(auditDir string) string {
	if k.path != "" {
		return k.path
	}
	return filepath.Join(filepath.Dir(filepath.Clean(auditDir)), "recorder.key")
}

// load reads or creates the key and logs its public half.
func (k *keyFlags) load(auditDir string, logger *slog.Logger) (*recorder.CheckpointConfig, error) {
	key, err := auditlog.LoadOrCreateKey(k.file(auditDir))
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	logger.Info("checkpoints signed", "key", k.file(auditDir), "key_id", auditlog.KeyID(pub), "pubkey", base64.StdEncoding.EncodeToString(pub))
	return &recorder.CheckpointConfig{Key: key}, nil
}

func newRecorderPubkeyCmd() *cobra.Command {
	var k keyFlags
	var auditDir string
	cmd := &cobra.Command{
		Use:   "pubkey",
		Short: "Print the public key of the recorder's checkpoint signing key (PEM), creating the key if missing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if k.path == "" && auditDir == "" {
				return usageError{errors.New("--key or --audit-dir is required")}
			}
			key, err := auditlog.LoadOrCreateKey(k.file(auditDir))
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(auditlog.MarshalPublicKey(key.Public().(ed25519.PublicKey)))
			return err
		},
	}
	addKeyFlags(cmd, &k)
	cmd.Flags().StringVar(&auditDir, "audit-dir", "", "audit log directory (locates the default key)")
	return cmd
}

// verifyFlags are the checkpoint flags of `fso audit verify`.
type verifyFlags struct {
	pubkey   string
	server   string
	recorder string
}

func addVerifyFlags(cmd *cobra.Command, f *verifyFlags) {
	cmd.Flags().StringVar(&f.pubkey, "pubkey", "", "the recorder's public key (file: PEM, or base64): check every checkpoint's signature")
	cmd.Flags().StringVar(&f.server, "server", "", "broker URLs: also check that the log holds the checkpoint the recorder last published (detects a cut-off tail)")
	cmd.Flags().StringVar(&f.recorder, "recorder", "", "with --server: the recorder's --name, when several publish checkpoints")
}

// options turns the flags into verify options.
func (f *verifyFlags) options(ctx context.Context) (auditlog.VerifyOptions, error) {
	var o auditlog.VerifyOptions
	if f.pubkey != "" {
		b, err := os.ReadFile(f.pubkey)
		if err != nil {
			b = []byte(f.pubkey) // the key itself
		}
		if o.PublicKey, err = auditlog.ParsePublicKey(b); err != nil {
			return o, usageError{fmt.Errorf("--pubkey: %w", err)}
		}
	}
	if f.server != "" {
		c, err := fetchCheckpoint(ctx, f.server, f.recorder)
		if err != nil {
			return o, err
		}
		o.Published = c
	}
	return o, nil
}

// fetchCheckpoint reads the latest published checkpoint from the broker.
func fetchCheckpoint(ctx context.Context, servers, name string) (*auditlog.Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(servers, nats.Name("fso-audit-verify"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("--server %s: %w", servers, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	kv, err := js.KeyValue(ctx, broker.AgentsBucket)
	if err != nil {
		return nil, fmt.Errorf("--server: bucket %s: %w", broker.AgentsBucket, err)
	}
	key := recorder.CheckpointKey(name)
	if name == "" {
		keys, err := kv.ListKeysFiltered(ctx, recorder.CheckpointKey("*"))
		if err != nil {
			return nil, fmt.Errorf("--server: list checkpoints: %w", err)
		}
		var all []string
		for k := range keys.Keys() {
			all = append(all, k)
		}
		switch len(all) {
		case 0:
			return nil, errors.New("--server: no recorder has published a checkpoint")
		case 1:
			key = all[0]
		default:
			return nil, usageError{fmt.Errorf("--server: several recorders publish checkpoints (%s): pick one with --recorder", strings.Join(all, ", "))}
		}
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("--server: get %s: %w", key, err)
	}
	var c auditlog.Checkpoint
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("--server: %s: %w", key, err)
	}
	return &c, nil
}

func printCheckpoints(out io.Writer, rep auditlog.Report, o auditlog.VerifyOptions) {
	fmt.Fprintf(out, "%d checkpoints", rep.Checkpoints)
	if o.PublicKey != nil {
		fmt.Fprintf(out, ", signatures checked with key %s", auditlog.KeyID(o.PublicKey))
	} else {
		fmt.Fprint(out, ", signatures not checked (no --pubkey)")
	}
	if p := o.Published; p != nil {
		fmt.Fprintf(out, ", published checkpoint of %s at %s (%d records)", p.Recorder, p.At.Format(time.RFC3339), p.Records)
	}
	fmt.Fprintln(out)
}
