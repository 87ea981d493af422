package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/auth"
	"github.com/fso-project/fso/internal/broker"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	// peerCert/peerKey serve both ends of a TLS connection (cluster routes:
	// each server dials the others).
	peerCert, peerKey string
}

func newPKI(t *testing.T, dir, name string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := pki{ca: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, p.ca, "CERTIFICATE", caDER)
	leaf := func(serial int64, cn string, usage ...x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(k)
		cf, kf := filepath.Join(dir, name+"-"+cn+".pem"), filepath.Join(dir, name+"-"+cn+"-key.pem")
		writePEM(t, cf, "CERTIFICATE", der)
		writePEM(t, kf, "EC PRIVATE KEY", kb)
		return cf, kf
	}
	p.serverCert, p.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	p.peerCert, p.peerKey = leaf(4, "peer", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// secureBroker is fso broker with mutual TLS and --auth, and the keys of
// agents a and b, a recorder and a controller.
type secureBroker struct {
	pki    pki
	keys   string
	url    string
	data   string
	broker *inproc
}

func startSecureBroker(t *testing.T) *secureBroker {
	t.Helper()
	dir := t.TempDir()
	s := &secureBroker{pki: newPKI(t, dir, "good"), keys: filepath.Join(dir, "keys"), data: filepath.Join(dir, "broker")}
	if code, out, errs := fsoCmd(t, "keys", "--dir", s.keys, "--agent", "a", "--agent", "b", "--recorder", "recorder", "--controller", "controller"); code != 0 {
		t.Fatalf("fso keys: %d %s %s", code, out, errs)
	}
	addr := freePort(t)
	s.url = "nats://" + addr
	s.broker = runFSO(t, "broker", "--data", s.data, "--listen", addr,
		"--tls-cert", s.pki.serverCert, "--tls-key", s.pki.serverKey, "--tls-ca", s.pki.ca, "--tls-verify",
		"--auth", filepath.Join(s.keys, "auth.json"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := s.connect(t, auth.RoleController, "controller")
		if err == nil {
			nc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("secure broker not ready: %v\n%s", err, s.broker.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// flags are the TLS and identity flags of a component.
func (s *secureBroker) flags(role auth.Role, name string) []string {
	return []string{"--server", s.url, "--tls-ca", s.pki.ca, "--tls-cert", s.pki.clientCert, "--tls-key", s.pki.clientKey,
		"--nkey", filepath.Join(s.keys, auth.SeedFile(role, name))}
}

// violations collects the permission violations the broker reports.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) add(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

func (v *violations) wait(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		for _, e := range v.errs {
			if strings.Contains(e, substr) {
				v.mu.Unlock()
				return
			}
		}
		v.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("no permissions violation mentioning %q; have %q", substr, v.errs)
}

func (s *secureBroker) connect(t *testing.T, role auth.Role, name string, extra ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	opts, err := auth.ClientOptions(filepath.Join(s.keys, auth.SeedFile(role, name)))
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.RootCAs(s.pki.ca), nats.ClientCert(s.pki.clientCert, s.pki.clientKey), nats.Timeout(3*time.Second))
	return nats.Connect(s.url, append(opts, extra...)...)
}

func (s *secureBroker) client(t *testing.T, role auth.Role, name string) (*nats.Conn, jetstream.JetStream, *violations) {
	t.Helper()
	v := &violations{}
	nc, err := s.connect(t, role, name, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { v.add(err) }))
	if err != nil {
		t.Fatalf("connect as %s %s: %v", role, name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, v
}

// TestSecurityTLS: without TLS, with a wrong CA, or without a client
// certificate a client is refused; a non-loopback --listen without TLS is
// refused unless --insecure.
func TestSecurityTLS(t *testing.T) {
	s := startSecureBroker(t)
	seed := filepath.Join(s.keys, auth.SeedFile(auth.RoleController, "controller"))
	kopts, _ := auth.ClientOptions(seed)
	wrong := newPKI(t, t.TempDir(), "wrong")
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"plaintext", nil},
		{"wrong CA", []nats.Option{nats.RootCAs(wrong.ca), nats.ClientCert(s.pki.clientCert, s.pki.clientKey)}},
		{"no client certificate", []nats.Option{nats.RootCAs(s.pki.ca)}},
		{"client certificate of another CA", []nats.Option{nats.RootCAs(s.pki.ca), nats.ClientCert(wrong.clientCert, wrong.clientKey)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(s.url, append(append([]nats.Option{nats.Timeout(3 * time.Second)}, kopts...), tc.opts...)...)
			if err == nil {
				nc.Close()
				t.Fatal("connected; want refused")
			}
		})
	}
	t.Run("no identity", func(t *testing.T) {
		nc, err := nats.Connect(s.url, nats.RootCAs(s.pki.ca), nats.ClientCert(s.pki.clientCert, s.pki.clientKey), nats.Timeout(3*time.Second))
		if err == nil {
			nc.Close()
			t.Fatal("connected without an nkey; want refused")
		}
	})
	t.Run("controller through the CLI with a wrong CA", func(t *testing.T) {
		args := append([]string{"controller", "agents", "--timeout", "3s"}, s.flags(auth.RoleController, "controller")...)
		args = append(args, "--tls-ca", wrong.ca)
		if code, _, errs := fsoCmd(t, args...); code == 0 {
			t.Fatalf("fso controller agents with a wrong CA exited 0; want an error (%s)", errs)
		}
	})
	t.Run("plaintext on a public address", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(freePort(t))
		code, _, errs := fsoCmd(t, "broker", "--data", t.TempDir(), "--listen", "0.0.0.0:"+port)
		if code == 0 || !strings.Contains(errs, "--insecure") || !strings.Contains(errs, "--tls-cert") {
			t.Fatalf("fso broker --listen 0.0.0.0 without TLS: exit %d, %q; want refused naming --tls-cert and --insecure", code, errs)
		}
		b := runFSO(t, "broker", "--data", t.TempDir(), "--listen", "0.0.0.0:"+port, "--insecure")
		waitPort(t, "127.0.0.1:"+port)
		b.cancel()
	})
}

func waitPort(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSecurityPermissions runs recorder, controller and agent a with their
// own credentials, then checks what each identity may not do.
func TestSecurityPermissions(t *testing.T) {
	s := startSecureBroker(t)
	root, secret, state, audit := t.TempDir(), t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "audit")
	recp := runFSO(t, append([]string{"recorder", "--audit-dir", audit}, s.flags(auth.RoleRecorder, "recorder")...)...)
	ag := runFSO(t, append([]string{"agent", "--id", "a", "--state", state, "--watch", root, "--important", "**/*.conf"}, s.flags(auth.RoleAgent, "a")...)...)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("recorder:\n%s\nagent:\n%s\nbroker:\n%s", recp.out, ag.out, s.broker.out)
		}
	})
	// The whole path works with credentials: an event is recorded. Files
	// written before the agent took its baseline are not events, so probe
	// until one is.
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; ; n++ {
		p := filepath.Join(root, fmt.Sprintf("probe-%d.txt", n))
		write(t, p, "hello")
		found := false
		for range 10 {
			for _, r := range readLog(t, audit) {
				if r.Kind == "event" && r.Agent == "a" && strings.HasPrefix(r.path, filepath.Join(root, "probe-")) {
					found = true
				}
			}
			if found {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing recorded within 30s")
		}
	}
	// The controller applies configuration; agent a renders and applies it.
	cfg := filepath.Join(t.TempDir(), "fso.yaml")
	write(t, cfg, "defaults:\n  watch:\n    - path: "+root+"\n  important: [\"**/*.conf\"]\n")
	if code, out, errs := fsoCmd(t, append([]string{"controller", "apply", "-f", cfg}, s.flags(auth.RoleController, "controller")...)...); code != 0 {
		t.Fatalf("controller apply: %d %s %s", code, out, errs)
	}

	t.Run("agent publishes as another agent", func(t *testing.T) {
		_, js, v := s.client(t, auth.RoleAgent, "a")
		if _, err := js.Publish(t.Context(), "fso.events.b.create", []byte(`{"agent":"b"}`)); err == nil {
			t.Fatal("agent a published to fso.events.b.create")
		}
		v.wait(t, `Publish to "fso.events.b.create"`)
		if _, err := js.Publish(t.Context(), "fso.diffs.b", []byte(`{}`)); err == nil {
			t.Fatal("agent a published to fso.diffs.b")
		}
	})
	t.Run("agent reads the stream", func(t *testing.T) {
		nc, js, v := s.client(t, auth.RoleAgent, "a")
		if _, err := js.CreateOrUpdateConsumer(t.Context(), "FSO", jetstream.ConsumerConfig{}); err == nil {
			t.Fatal("agent a created a consumer on FSO")
		}
		// Refused for its rights, not only by the work queue's rule of one
		// consumer per subject.
		v.wait(t, `Publish to "$JS.API.CONSUMER.CREATE.FSO`)
		if _, err := js.Stream(t.Context(), "FSO"); err == nil {
			t.Fatal("agent a read the FSO stream's info")
		}
		if _, err := nc.SubscribeSync("fso.events.>"); err == nil {
			nc.Flush()
		}
		v.wait(t, `Subscription to "fso.events.>"`)
	})
	t.Run("agent reads another agent's keys and inbox", func(t *testing.T) {
		nc, js, v := s.client(t, auth.RoleAgent, "a")
		cfgKV, err := js.KeyValue(t.Context(), "fso-config")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfgKV.Get(t.Context(), "agents.a"); err != nil {
			t.Errorf("agent a reads its own configuration: %v", err)
		}
		if _, err := cfgKV.Get(t.Context(), "agents.b"); err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("agent a reads agents.b: have %v, want a permissions error", err)
		}
		// Nor the whole document: agents get only their own rendering.
		if _, err := cfgKV.Get(t.Context(), "doc"); err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("agent a reads the document: have %v, want a permissions error", err)
		}
		if _, err := cfgKV.Put(t.Context(), "doc", []byte("defaults: {}\n")); err == nil {
			t.Error("agent a wrote the configuration document")
		}
		if _, err := cfgKV.Put(t.Context(), "agents.a", []byte("{}")); err == nil {
			t.Error("agent a wrote its own rendered configuration")
		}
		if _, err := cfgKV.Keys(t.Context()); err == nil {
			t.Error("agent a listed the configuration keys")
		}
		agKV, err := js.KeyValue(t.Context(), "fso-agents")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agKV.Get(t.Context(), "recorded.a"); err != nil {
			t.Errorf("agent a reads its own watermark: %v", err)
		}
		for _, k := range []string{"recorded.b", "status.b", "checkpoint.recorder"} {
			if _, err := agKV.Get(t.Context(), k); err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("agent a reads %s: have %v, want a permissions error", k, err)
			}
		}
		for _, k := range []string{"recorded.a", "status.b"} {
			if _, err := agKV.Put(t.Context(), k, []byte("999999")); err == nil {
				t.Errorf("agent a wrote %s", k)
			}
		}
		bkey, _ := auth.LoadSeed(filepath.Join(s.keys, auth.SeedFile(auth.RoleAgent, "b")))
		bpub, _ := bkey.PublicKey()
		nc.SubscribeSync(auth.Inbox(bpub) + ".>")
		nc.Flush()
		v.wait(t, "Subscription to \""+auth.Inbox(bpub))
	})
	t.Run("only the controller writes configuration", func(t *testing.T) {
		_, js, _ := s.client(t, auth.RoleRecorder, "recorder")
		kv, err := js.KeyValue(t.Context(), "fso-config")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), "doc", []byte("defaults: {}\n")); err == nil {
			t.Error("the recorder wrote the configuration document")
		}
		if err := kv.Purge(t.Context(), "doc"); err == nil {
			t.Error("the recorder purged the configuration document")
		}
		_, cjs, cv := s.client(t, auth.RoleController, "controller")
		if _, err := cjs.CreateOrUpdateConsumer(t.Context(), "FSO", jetstream.ConsumerConfig{}); err == nil {
			t.Error("the controller created a consumer on FSO")
		}
		cv.wait(t, `Publish to "$JS.API.CONSUMER.CREATE.FSO`)
		if err := cjs.DeleteStream(t.Context(), "FSO"); err == nil {
			t.Error("the controller deleted the FSO stream")
		}
		ckv, err := cjs.KeyValue(t.Context(), "fso-config")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ckv.Get(t.Context(), "doc"); err != nil {
			t.Errorf("the controller reads the document: %v", err)
		}
	})
	t.Run("payload names another agent", func(t *testing.T) {
		_, js, _ := s.client(t, auth.RoleAgent, "a")
		forged := `{"kind":"event","id":"b:1","agent":"b","host":"h","seq":1,"type":"create","path":"/forged","observed_at":"2025-01-01T00:00:00Z","emitted_at":"2025-01-01T00:00:00Z","source":"watch"}`
		if _, err := js.Publish(t.Context(), "fso.events.a.create", []byte(forged)); err != nil {
			t.Fatalf("agent a publishes on its own subject: %v", err)
		}
		waitRaw(t, audit, func(lines []map[string]any) bool {
			for _, l := range lines {
				if l["kind"] == "rejected" && l["subject"] == "fso.events.a.create" && strings.Contains(fmt.Sprint(l["reason"]), `payload agent "b"`) {
					return true
				}
			}
			return false
		})
		for _, l := range rawLines(t, audit) {
			if l["kind"] == "event" && l["path"] == "/forged" {
				t.Fatalf("forged event accepted: %v", l)
			}
		}
		waitStatus(t, s, "recorder", func(st map[string]any) bool {
			n, _ := st["rejected"].(float64)
			return n >= 1
		})
	})
	t.Run("symlink swap leaks nothing", func(t *testing.T) {
		const marker = "TOP-SECRET-MARKER-7f3a"
		secretFile := filepath.Join(secret, "app.conf")
		write(t, secretFile, marker+"\n")
		sum := sha256.Sum256([]byte(marker + "\n"))
		conf := filepath.Join(root, "etc", "app.conf")
		os.MkdirAll(filepath.Dir(conf), 0o755)
		write(t, conf, "harmless=1\n")
		waitDiffs(t, audit, conf, func(ds []diffRec) bool { return len(ds) > 0 })
		for i := range 20 {
			// Swap the directory for a link to the secret's, and the
			// file for a link to the secret, while writing through both.
			os.Rename(filepath.Join(root, "etc"), filepath.Join(root, "etc.old"))
			os.Symlink(secret, filepath.Join(root, "etc"))
			os.WriteFile(filepath.Join(root, "etc.old", "app.conf"), []byte("harmless="+string(rune('a'+i))+"\n"), 0o644)
			os.Remove(filepath.Join(root, "etc"))
			os.Rename(filepath.Join(root, "etc.old"), filepath.Join(root, "etc"))
			os.Remove(conf)
			os.Symlink(secretFile, conf)
			os.Remove(conf)
			write(t, conf, "harmless=z\n")
		}
		write(t, filepath.Join(root, "done.txt"), "done")
		waitLog(t, audit, 30*time.Second, func(rs []rec) bool {
			for _, r := range rs {
				if r.path == filepath.Join(root, "done.txt") {
					return true
				}
			}
			return false
		})
		for _, dir := range []string{audit, s.data} {
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				b, _ := os.ReadFile(p)
				if bytes.Contains(b, []byte(marker)) {
					t.Errorf("%s holds the secret marker", p)
				}
				if bytes.Contains(b, []byte(hex.EncodeToString(sum[:]))) {
					t.Errorf("%s holds the secret's sha256", p)
				}
				return nil
			})
		}
	})
	ag.stop(t)
	recp.stop(t)
}

func rawLines(t *testing.T, dir string) []map[string]any {
	t.Helper()
	var out []map[string]any
	ms, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, m := range ms {
		b, _ := os.ReadFile(m)
		for _, l := range bytes.Split(b, []byte("\n")) {
			var x map[string]any
			if json.Unmarshal(l, &x) == nil {
				out = append(out, x)
			}
		}
	}
	return out
}

func waitRaw(t *testing.T, dir string, done func([]map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !done(rawLines(t, dir)) {
		if time.Now().After(deadline) {
			t.Fatalf("audit log never held what the test waits for")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus waits for the recorder's status key, read as the controller.
func waitStatus(t *testing.T, s *secureBroker, name string, done func(map[string]any) bool) {
	t.Helper()
	_, js, _ := s.client(t, auth.RoleController, "controller")
	kv, err := js.KeyValue(t.Context(), "fso-agents")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, err := kv.Get(t.Context(), "recorder."+name)
		if err == nil {
			var st map[string]any
			if json.Unmarshal(e.Value(), &st) == nil && done(st) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorder status %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The agent's state dir is 0700, also when it existed with looser
// permissions: it holds snapshots of important files.
func TestStateDirPrivate(t *testing.T) {
	data := t.TempDir()
	state := filepath.Join(data, "agent")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &upSystem{root: t.TempDir(), data: data, audit: filepath.Join(data, "audit")}
	s.start(t)
	s.p.stop(t)
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("state dir mode %v, want 0700", perm)
	}
}

// A three-node cluster whose routes run over TLS forms, replicates the FSO
// stream (R3), and carries events end to end.
func TestSecurityClusterTLS(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "cluster")
	const n = 3
	var client, route []string
	for range n {
		client = append(client, freePort(t))
		route = append(route, freePort(t))
	}
	tlsFlags := func(q pki) []string {
		return []string{"--tls-cert", q.peerCert, "--tls-key", q.peerKey, "--tls-ca", q.ca}
	}
	brokerArgs := func(i int, q pki) []string {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, "nats://"+route[j])
			}
		}
		args := []string{"broker", "--data", t.TempDir(), "--listen", client[i], "--name", fmt.Sprintf("c%d", i),
			"--cluster", route[i], "--routes", strings.Join(routes, ",")}
		return append(args, tlsFlags(q)...)
	}
	var brokers []*proc
	for i := range n {
		brokers = append(brokers, startProc(t, brokerArgs(i, p)...))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, b := range brokers {
				t.Logf("process %d (brokers, recorder, agent):\n%s", i, b.out.String())
			}
		}
	})
	var urls []string
	for i := range n {
		urls = append(urls, "tls://"+client[i])
	}
	url := strings.Join(urls, ",")
	clientTLS := []string{"--tls-ca", p.ca}
	nc, err := nats.Connect(url, nats.RootCAs(p.ca), nats.Timeout(5*time.Second), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// A new cluster elects its leaders and the brokers create the stream
	// (R3) concurrently: that takes several seconds.
	// The buckets come after the stream; the probe below has 30 s for
	// recording alone.
	var st jetstream.Stream
	for deadline := time.Now().Add(90 * time.Second); ; {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		st, err = js.Stream(ctx, "FSO")
		if err == nil {
			_, err = js.KeyValue(ctx, broker.AgentsBucket)
		}
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no FSO stream and %s bucket on the TLS cluster after 90 s: %v", broker.AgentsBucket, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	audit, state, root := t.TempDir(), t.TempDir(), t.TempDir()
	brokers = append(brokers,
		startProc(t, append([]string{"recorder", "--server", url, "--audit-dir", audit}, clientTLS...)...),
		startProc(t, append([]string{"agent", "--server", url, "--id", "ctls", "--state", state, "--watch", root}, clientTLS...)...))
	waitProbe(t, root, audit, "tls")

	// Asked now, not when the stream was first seen: until its leader is
	// elected the info lists all three peers as replicas and no leader.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("FSO stream: replicas %d, cluster %+v; want R3 with a leader over the TLS routes", info.Config.Replicas, info.Cluster)
	}
}
