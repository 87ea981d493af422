package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Role is what an identity may do on the broker.
type Role string

// The roles.
const (
	RoleAgent      Role = "agent"
	RoleRecorder   Role = "recorder"
	RoleController Role = "controller"
)

// ErrInvalid wraps every problem of an auth file or a seed file.
var ErrInvalid = errors.New("auth: invalid")

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Identity is one issued credential as the broker knows it: no secret.
type Identity struct {
	Role Role   `json:"role"`
	Name string `json:"name"` // the agent id for agents
	// Nkey is the public user key (U...).
	Nkey string `json:"nkey"`
}

// Validate reports what is wrong with id.
func (id Identity) Validate() error {
	switch id.Role {
	case RoleAgent, RoleRecorder, RoleController:
	default:
		return fmt.Errorf("%w: role %q: want agent, recorder or controller", ErrInvalid, id.Role)
	}
	if !nameRE.MatchString(id.Name) {
		return fmt.Errorf("%w: %s name %q: want [a-z0-9-], at most 63 characters", ErrInvalid, id.Role, id.Name)
	}
	if !nkeys.IsValidPublicUserKey(id.Nkey) {
		return fmt.Errorf("%w: %s %s: nkey %q is not a public user key", ErrInvalid, id.Role, id.Name, id.Nkey)
	}
	return nil
}

// File is the broker's auth file: every identity it admits.
type File struct {
	Identities []Identity `json:"identities"`
}

// Validate checks every identity and that no key or (role, name) repeats.
func (f *File) Validate() error {
	keys := map[string]bool{}
	names := map[string]bool{}
	for i, id := range f.Identities {
		if err := id.Validate(); err != nil {
			return fmt.Errorf("identities[%d]: %w", i, err)
		}
		if keys[id.Nkey] {
			return fmt.Errorf("%w: identities[%d]: nkey %s given twice", ErrInvalid, i, id.Nkey)
		}
		k := string(id.Role) + "/" + id.Name
		if names[k] {
			return fmt.Errorf("%w: identities[%d]: %s %s given twice", ErrInvalid, i, id.Role, id.Name)
		}
		keys[id.Nkey], names[k] = true, true
	}
	return nil
}

// Load reads and validates an auth file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	var f File
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, nil
}

// Save writes f to path atomically (0644: it holds no secret).
func (f *File) Save(path string) error {
	if err := f.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'), 0o644)
}

// Inbox is the inbox prefix of the client whose public key is pub: the
// only subjects it may subscribe to are under it.
func Inbox(pub string) string { return "_INBOX." + pub }

// SeedFile is the name `fso keys` gives the seed of (role, name).
func SeedFile(role Role, name string) string { return string(role) + "-" + name + ".nk" }

// Issue creates a new user nkey for (role, name), writes its seed to
// dir/SeedFile(role, name) with mode 0600, and returns the identity. An
// existing seed file is kept and its identity returned.
func Issue(dir string, role Role, name string) (Identity, error) {
	id := Identity{Role: role, Name: name}
	p := filepath.Join(dir, SeedFile(role, name))
	if _, err := os.Stat(p); err == nil {
		kp, err := LoadSeed(p)
		if err != nil {
			return id, err
		}
		id.Nkey, _ = kp.PublicKey()
		return id, id.Validate()
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return id, fmt.Errorf("auth: %w", err)
	}
	id.Nkey, _ = kp.PublicKey()
	if err := id.Validate(); err != nil {
		return id, err
	}
	seed, _ := kp.Seed()
	if err := writeFile(p, append(seed, '\n'), 0o600); err != nil {
		return id, err
	}
	return id, nil
}

// LoadSeed reads a user seed file (as written by Issue or nsc). A file
// others can read is refused: the seed is the identity.
func LoadSeed(path string) (nkeys.KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s: mode %v lets others read the seed; chmod 600 it", ErrInvalid, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	var seed []byte
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "SU") {
			seed = []byte(l)
			break
		}
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: no user seed (SU...): %v", ErrInvalid, path, err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%w: %s: not a user seed", ErrInvalid, path)
	}
	return kp, nil
}

// ClientOptions are the connect options of the identity whose seed is at
// path: nkey authentication and its own inbox prefix.
func ClientOptions(path string) ([]nats.Option, error) {
	kp, err := LoadSeed(path)
	if err != nil {
		return nil, err
	}
	pub, _ := kp.PublicKey()
	sign := func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) }
	return []nats.Option{nats.Nkey(pub, sign), nats.CustomInboxPrefix(Inbox(pub))}, nil
}

// Add puts id into f, replacing an identity with the same role and name.
func (f *File) Add(id Identity) {
	f.Identities = slices.DeleteFunc(f.Identities, func(o Identity) bool { return o.Role == id.Role && o.Name == id.Name })
	f.Identities = append(f.Identities, id)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}
