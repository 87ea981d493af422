package broker_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fso-project/fso/internal/auth"
	"github.com/fso-project/fso/internal/broker"
)

// TestAuthSetup: with --auth, the broker's own in-process connection sets
// FSO up, a network client without an identity is refused, and one with
// an issued identity connects.
func TestAuthSetup(t *testing.T) {
	dir := t.TempDir()
	var f auth.File
	for _, r := range []auth.Role{auth.RoleAgent, auth.RoleController} {
		id, err := auth.Issue(dir, r, "x")
		if err != nil {
			t.Fatal(err)
		}
		f.Add(id)
	}
	af := filepath.Join(dir, "auth.json")
	if err := f.Save(af); err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(broker.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Auth: af}, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := b.Connect("setup")
	if err != nil {
		t.Fatalf("in-process connect: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := broker.Setup(ctx, js, broker.SetupOptions{}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	if c, err := nats.Connect(b.ClientURL(), nats.Timeout(2*time.Second)); err == nil {
		c.Close()
		t.Fatal("connected without an identity")
	}
	if c, err := nats.Connect(b.ClientURL(), nats.UserInfo("fso-broker-internal", "guess")); err == nil {
		c.Close()
		t.Fatal("connected as the internal user over TCP")
	}
	opts, err := auth.ClientOptions(filepath.Join(dir, auth.SeedFile(auth.RoleAgent, "x")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := nats.Connect(b.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect as agent x: %v", err)
	}
	c.Close()
}
