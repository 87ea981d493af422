// Package broker runs FSO's embedded NATS server with JetStream and creates,
// idempotently, what FSO needs on any NATS deployment: the FSO stream, the
// recorder's durable consumer and the fso-config and fso-agents buckets.
//
// Only this package and the command layer know that a server can be
// embedded; every other package takes a [jetstream.JetStream].
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config is the embedded server's configuration.
type Config struct {
	DataDir string // JetStream file store; required
	Listen  string // client address host:port; port 0 picks a free one
	// MaxPayload bounds one message; default 8 MiB, enough for any record
	// event.Decode accepts.
	MaxPayload int32
	// Cluster, when set, is the host:port of this server's cluster listener;
	// Routes are the other servers' cluster URLs (nats://host:port) and Name
	// this server's unique name within the cluster.
	Cluster     string
	Routes      []string
	Name        string
	ClusterName string
	// MQTT, when set, is host:port of an MQTT 3.1.1 listener, so any MQTT
	// client can watch fso/events/# live.
	MQTT string
	// TLS of the client and cluster listeners: the broker's certificate
	// and key, and the CA that client (and route) certificates must chain
	// to. With TLSVerify clients must present such a certificate (mutual
	// TLS). Cluster routes always verify each other when TLS is on.
	TLSCert, TLSKey, TLSCA string
	TLSVerify              bool
	// Insecure allows plaintext on a non-loopback listener.
	Insecure bool
	// Auth is the auth file `fso keys` writes; when set every client must
	// authenticate as one of its identities, and gets its permissions.
	Auth string
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:4222"
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 8 << 20
	}
	if c.ClusterName == "" {
		c.ClusterName = "fso"
	}
}

// Validate reports the first problem of c, naming the flag it comes from.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("broker: --data is required")
	}
	if _, _, err := splitHostPort(c.Listen); err != nil {
		return fmt.Errorf("broker: --listen %q: %w", c.Listen, err)
	}
	if c.Cluster != "" {
		if _, _, err := splitHostPort(c.Cluster); err != nil {
			return fmt.Errorf("broker: --cluster %q: %w", c.Cluster, err)
		}
		if c.Name == "" {
			return errors.New("broker: --name is required with --cluster (a unique server name)")
		}
	}
	for _, r := range c.Routes {
		if _, err := url.Parse(r); err != nil {
			return fmt.Errorf("broker: --routes %q: %w", r, err)
		}
	}
	if c.MQTT != "" {
		if _, _, err := splitHostPort(c.MQTT); err != nil {
			return fmt.Errorf("broker: --mqtt %q: %w", c.MQTT, err)
		}
	}
	return c.validateSecurity()
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, port, nil
}

// Broker is a running embedded NATS server with JetStream.
type Broker struct {
	srv      *server.Server
	logger   *slog.Logger
	internal []nats.Option // how in-process clients authenticate
}

// Start starts the server and returns once it accepts connections. It fails
// with an error naming the flag when a listen address is taken.
func Start(cfg Config, logger *slog.Logger) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, _ := splitHostPort(cfg.Listen)
	// nats-server reports a taken port only in its log, after Start; probe
	// first so the user gets a one-line error that names the flag.
	if err := probeListen(cfg.Listen); err != nil {
		return nil, fmt.Errorf("broker: --listen %s: %w", cfg.Listen, err)
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
		// Clients retry on their own; a long write deadline avoids
		// dropping slow in-process consumers during fsync stalls.
		WriteDeadline: 10 * time.Second,
	}
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if cfg.Cluster != "" {
		ch, cp, _ := splitHostPort(cfg.Cluster)
		if err := probeListen(cfg.Cluster); err != nil {
			return nil, fmt.Errorf("broker: --cluster %s: %w", cfg.Cluster, err)
		}
		opts.Cluster.Host, opts.Cluster.Port, opts.Cluster.Name = ch, cp, cfg.ClusterName
		opts.Routes = server.RoutesFromStr(strings.Join(cfg.Routes, ","))
	}
	if cfg.MQTT != "" {
		mh, mp, _ := splitHostPort(cfg.MQTT)
		if err := probeListen(cfg.MQTT); err != nil {
			return nil, fmt.Errorf("broker: --mqtt %s: %w", cfg.MQTT, err)
		}
		opts.MQTT.Host, opts.MQTT.Port = mh, mp
	}
	var internal []nats.Option
	if err := cfg.secure(opts); err != nil {
		return nil, err
	}
	if cfg.Auth != "" {
		f, err := loadAuth(cfg.Auth)
		if err != nil {
			return nil, err
		}
		u, p := applyAuth(opts, f)
		internal = append(internal, nats.UserInfo(u, p))
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv.SetLoggerV2(&natsLogger{l: logger}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("broker: server on %s not ready after 30s", cfg.Listen)
	}
	logger.Info("broker ready", "listen", srv.ClientURL(), "data", cfg.DataDir, "cluster", cfg.Cluster)
	return &Broker{srv: srv, logger: logger, internal: internal}, nil
}

func probeListen(addr string) error {
	_, port, _ := splitHostPort(addr)
	if port == 0 {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			return op.Err
		}
		return err
	}
	return ln.Close()
}

// ClientURL is the nats:// URL clients use to reach the server over TCP.
func (b *Broker) ClientURL() string { return b.srv.ClientURL() }

// Connect opens an in-process client connection (no TCP).
func (b *Broker) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append(append([]nats.Option{nats.InProcessServer(b.srv), nats.Name(name), nats.MaxReconnects(-1)}, b.internal...), opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect in-process: %w", err)
	}
	return nc, nil
}

// Server exposes the embedded server, for tests and the command layer.
func (b *Broker) Server() *server.Server { return b.srv }

// Shutdown stops the server and waits until it has.
func (b *Broker) Shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

// Run waits for ctx to end, then shuts the server down.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.Shutdown()
	b.logger.Info("broker stopped")
	return nil
}

// natsLogger adapts slog to nats-server's printf-style Logger.
type natsLogger struct{ l *slog.Logger }

func (n *natsLogger) Noticef(f string, v ...any) {
	n.l.Debug(fmt.Sprintf(f, v...), "component", "nats")
}
func (n *natsLogger) Warnf(f string, v ...any)  { n.l.Warn(fmt.Sprintf(f, v...), "component", "nats") }
func (n *natsLogger) Fatalf(f string, v ...any) { n.l.Error(fmt.Sprintf(f, v...), "component", "nats") }
func (n *natsLogger) Errorf(f string, v ...any) { n.l.Error(fmt.Sprintf(f, v...), "component", "nats") }
func (n *natsLogger) Debugf(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
func (n *natsLogger) Tracef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
