package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/fso-project/fso/internal/auth"
	"github.com/fso-project/fso/internal/broker"
)

// clientSecurity are the TLS and identity flags of every broker client.
type clientSecurity struct {
	ca, cert, key string
	nkey          string // seed file from fso keys
}

func (s *clientSecurity) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.ca, "tls-ca", "", "PEM CA file the broker's certificate must chain to (enables TLS)")
	f.StringVar(&s.cert, "tls-cert", "", "PEM client certificate, for a broker that requires mutual TLS")
	f.StringVar(&s.key, "tls-key", "", "PEM key of --tls-cert")
	f.StringVar(&s.nkey, "nkey", "", "this component's nkey seed file, from `fso keys`, for a broker run with --auth")
}

// options are the connect options the flags ask for.
func (s *clientSecurity) options() ([]nats.Option, error) {
	var opts []nats.Option
	if (s.cert == "") != (s.key == "") {
		return nil, usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	if s.ca != "" {
		opts = append(opts, nats.RootCAs(s.ca))
	}
	if s.cert != "" {
		opts = append(opts, nats.ClientCert(s.cert, s.key))
	}
	if s.nkey != "" {
		o, err := auth.ClientOptions(s.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey: %w", err)
		}
		opts = append(opts, o...)
	}
	return opts, nil
}

// connectAs is connect with TLS and an identity. With an identity the
// client does not set the stream and buckets up (its permissions do not
// allow it): the broker, run with --auth, already has.
func connectAs(ctx context.Context, servers, name string, logger *slog.Logger, sec clientSecurity, jsOpts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := sec.options()
	if err != nil {
		return nil, nil, err
	}
	nc, err := dial(servers, name, logger, append(opts, authErrors(logger))...)
	if err != nil {
		return nil, nil, err
	}
	if sec.nkey == "" {
		return setup(ctx, nc, logger, jsOpts...)
	}
	js, err := jetstream.New(nc, jsOpts...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	for !nc.IsConnected() {
		if err := nc.LastError(); err != nil && isAuthError(err) {
			nc.Close()
			return nil, nil, fmt.Errorf("connect %s: %w", strings.Join(nc.Servers(), ","), err)
		}
		select {
		case <-ctx.Done():
			err := nc.LastError()
			nc.Close()
			return nil, nil, fmt.Errorf("connect %s: %w", strings.Join(nc.Servers(), ","), errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nc, js, nil
}

// connectLaterAs is connectLater with TLS and an identity.
func connectLaterAs(servers, name string, logger *slog.Logger, sec clientSecurity, jsOpts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := sec.options()
	if err != nil {
		return nil, nil, err
	}
	nc, err := dial(servers, name, logger, append(opts, authErrors(logger))...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jsOpts...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// authErrors logs what the broker refuses: a permission violation is a
// bug in FSO's permissions or an attack, never routine.
func authErrors(logger *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			logger.Error("broker refused", "subject", sub.Subject, "err", err)
			return
		}
		logger.Error("broker refused", "err", err)
	})
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		strings.Contains(strings.ToLower(err.Error()), "authorization") ||
		strings.Contains(err.Error(), "x509") || strings.Contains(err.Error(), "tls")
}

// addBrokerSecurityFlags are fso broker's (and fso up's) TLS and auth flags.
func addBrokerSecurityFlags(cmd *cobra.Command, c *broker.Config) {
	f := cmd.Flags()
	f.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate of the client and cluster listeners (enables TLS)")
	f.StringVar(&c.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	f.StringVar(&c.TLSCA, "tls-ca", "", "PEM CA that client certificates (with --tls-verify) and cluster routes must chain to")
	f.BoolVar(&c.TLSVerify, "tls-verify", false, "mutual TLS: every client must present a certificate signed by --tls-ca")
	f.BoolVar(&c.Insecure, "insecure", false, "allow plaintext on a non-loopback --listen, --cluster or --mqtt")
	f.StringVar(&c.Auth, "auth", "", "auth file from `fso keys`: clients must authenticate with an issued nkey, and get only their role's permissions")
}
