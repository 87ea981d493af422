package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrPlaintext is returned for a non-loopback listener without TLS.
var ErrPlaintext = errors.New("broker: plaintext on a non-loopback address")

// isLoopback reports whether host only accepts connections from this
// machine. An empty host, 0.0.0.0 or :: listen everywhere.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

func (c *Config) tls() bool { return c.TLSCert != "" || c.TLSKey != "" }

func (c *Config) validateSecurity() error {
	if c.tls() && (c.TLSCert == "" || c.TLSKey == "") {
		return errors.New("broker: --tls-cert and --tls-key go together")
	}
	if c.TLSVerify && c.TLSCA == "" {
		return errors.New("broker: --tls-verify needs --tls-ca, the CA client certificates must chain to")
	}
	if c.TLSVerify && !c.tls() {
		return errors.New("broker: --tls-verify needs --tls-cert and --tls-key")
	}
	if c.tls() || c.Insecure {
		return nil
	}
	for _, l := range []struct{ flag, addr string }{{"--listen", c.Listen}, {"--cluster", c.Cluster}, {"--mqtt", c.MQTT}} {
		if l.addr == "" {
			continue
		}
		h, _, _ := net.SplitHostPort(l.addr)
		if !isLoopback(h) {
			return fmt.Errorf("%w: %s %s accepts connections from other hosts, whose traffic (events, file diffs, configuration) would cross the network unencrypted and unauthenticated; give --tls-cert and --tls-key (and --auth), or --insecure to accept that", ErrPlaintext, l.flag, l.addr)
		}
	}
	return nil
}

// secure sets the TLS options of opts from c.
func (c *Config) secure(opts *server.Options) error {
	if !c.tls() {
		return nil
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA, Verify: c.TLSVerify})
	if err != nil {
		return fmt.Errorf("broker: TLS: %w", err)
	}
	opts.TLSConfig, opts.TLS, opts.TLSVerify, opts.TLSTimeout = tc, true, c.TLSVerify, 5
	if c.Cluster != "" {
		// Routes present the same certificate and must chain to the CA.
		rc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA, Verify: c.TLSCA != ""})
		if err != nil {
			return fmt.Errorf("broker: cluster TLS: %w", err)
		}
		// A server dials its peers as well as accepting them: as nats-server
		// does for a cluster block in its config file, verify both ways and
		// trust the CA as a root for the dialing side too (without this the
		// routes never come up).
		rc.ClientAuth = tls.RequireAndVerifyClientCert
		rc.RootCAs = rc.ClientCAs
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = rc, 5
	}
	return nil
}
