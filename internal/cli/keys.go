package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/auth"
	"github.com/fso-project/fso/internal/event"
)

// AuthFile is the name of the broker's auth file in the keys directory.
const AuthFile = "auth.json"

func newKeysCmd(g *globals) *cobra.Command {
	var dir string
	var agents, recorders, controllers []string
	cmd := &cobra.Command{
		Use:   "keys --dir DIR [--agent ID]... [--recorder NAME]... [--controller NAME]...",
		Short: "Issue nkey credentials for agents, recorders and controllers, and the broker's auth file",
		Long: `Creates one NATS user nkey per identity: the seed in DIR/ROLE-NAME.nk
(mode 0600; copy it to that component's host only and pass it as --nkey),
the public key in DIR/auth.json, which fso broker --auth reads. Running it
again adds identities and keeps existing seeds. Without any role flag it
issues a recorder "recorder" and a controller "controller".

An agent may publish only its own events and diffs, put only its status,
read only its watermark and its configuration, and cannot read the event
stream; only a controller writes configuration; only a recorder consumes
the stream.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{errors.New("--dir is required")}
			}
			if len(agents)+len(recorders)+len(controllers) == 0 {
				recorders, controllers = []string{"recorder"}, []string{"controller"}
			}
			for _, a := range agents {
				if err := event.ValidAgentID(a); err != nil {
					return usageError{fmt.Errorf("--agent: %w", err)}
				}
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := os.Chmod(dir, 0o700); err != nil {
				return err
			}
			path := filepath.Join(dir, AuthFile)
			f := &auth.File{}
			if _, err := os.Stat(path); err == nil {
				if f, err = auth.Load(path); err != nil {
					return err
				}
			}
			issue := func(role auth.Role, names []string) error {
				for _, n := range names {
					id, err := auth.Issue(dir, role, n)
					if err != nil {
						return err
					}
					f.Add(id)
					fmt.Fprintf(cmd.OutOrStdout(), "%-10s %-24s %s  %s\n", role, n, id.Nkey, filepath.Join(dir, auth.SeedFile(role, n)))
				}
				return nil
			}
			if err := errors.Join(issue(auth.RoleAgent, agents), issue(auth.RoleRecorder, recorders), issue(auth.RoleController, controllers)); err != nil {
				return err
			}
			if err := f.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "broker auth file: %s (fso broker --auth %s)\n", path, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the seeds and auth.json (created 0700)")
	cmd.Flags().StringArrayVar(&agents, "agent", nil, "issue a credential for the agent with this --id (repeatable)")
	cmd.Flags().StringArrayVar(&recorders, "recorder", nil, "issue a recorder credential with this name (repeatable)")
	cmd.Flags().StringArrayVar(&controllers, "controller", nil, "issue a controller credential with this name (repeatable)")
	return cmd
}
