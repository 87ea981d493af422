package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fso-project/fso/internal/event"
)

// opKind is one kind of operation the generator makes.
type opKind uint8

const (
	opCreate opKind = iota // create, write a line, close
	opAppend               // append a line to an existing file
	opChmod                // chmod an existing file
	opRename               // rename an existing file in its directory
	opDelete               // delete an existing file
	opMkdir                // make a directory (race)
)

// want is the event type FSO should report for the kind.
func (k opKind) want() event.Type {
	switch k {
	case opAppend:
		return event.Modify
	case opChmod:
		return event.Attrib
	case opRename:
		return event.Rename
	case opDelete:
		return event.Delete
	default:
		return event.Create
	}
}

func (k opKind) String() string {
	return [...]string{"create", "append", "chmod", "rename", "delete", "mkdir"}[k]
}

// op is one operation and its ground truth.
type op struct {
	kind  opKind
	path  string // rename: the new path
	old   string // rename: the old path
	start time.Time
}

// mixed is the harness's mix: per 20 ops, 8 creates, 4 appends, 2 chmods,
// 3 renames, 3 deletes, interleaved.
var mixed = [20]opKind{opCreate, opAppend, opRename, opCreate, opDelete, opChmod, opCreate, opAppend, opRename, opCreate,
	opDelete, opCreate, opAppend, opChmod, opCreate, opRename, opDelete, opCreate, opAppend, opCreate}

// generator makes operations under dir, each on its own path.
type generator struct {
	dir   string
	dirs  []string // subdirectories ops are spread over
	pool  []string // existing files not yet used by an op
	n     int      // names made so far
	line  []byte
	fails int
}

const genDirs = 100

func newGenerator(dir string) (*generator, error) {
	g := &generator{dir: dir, line: []byte("fso bench line\n")}
	for i := range genDirs {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		g.dirs = append(g.dirs, d)
	}
	return g, nil
}

func (g *generator) name(prefix string) string {
	g.n++
	return filepath.Join(g.dirs[g.n%len(g.dirs)], fmt.Sprintf("%s%07d", prefix, g.n))
}

// fill creates n files for later appends, chmods, renames and deletes; it
// returns them as ops, to be waited for before measuring.
func (g *generator) fill(n int) []op {
	ops := make([]op, 0, n)
	for range n {
		o := g.do(opCreate)
		g.pool = append(g.pool, o.path)
		ops = append(ops, o)
	}
	return ops
}

// needPool is how many existing files n mixed ops use.
func needPool(n int) int { return n*12/20 + 20 }

// do performs one op of kind k.
func (g *generator) do(k opKind) op {
	o := op{kind: k}
	if k != opCreate && len(g.pool) == 0 {
		k, o.kind = opCreate, opCreate // out of existing files
	}
	if k == opCreate {
		o.path = g.name("f")
	} else {
		o.path = g.pool[len(g.pool)-1]
		g.pool = g.pool[:len(g.pool)-1]
	}
	o.start = time.Now()
	var err error
	switch k {
	case opCreate:
		err = os.WriteFile(o.path, g.line, 0o644)
	case opAppend:
		var f *os.File
		if f, err = os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			_, err = f.Write(g.line)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	case opChmod:
		err = os.Chmod(o.path, 0o600)
	case opRename:
		o.old, o.path = o.path, o.path+".r"
		err = os.Rename(o.old, o.path)
	case opDelete:
		err = os.Remove(o.path)
	}
	if err != nil {
		g.fails++
	}
	return o
}

// burst makes n ops as fast as it can: mixed, or creates only.
func (g *generator) burst(n int, createOnly bool) []op {
	ops := make([]op, 0, n)
	for i := range n {
		k := mixed[i%len(mixed)]
		if createOnly {
			k = opCreate
		}
		ops = append(ops, g.do(k))
	}
	return ops
}

// paced makes mixed ops at rate per second for d, and returns them with
// the rate it achieved.
func (g *generator) paced(ctx context.Context, rate int, d time.Duration) ([]op, float64) {
	n := int(float64(rate) * d.Seconds())
	ops := make([]op, 0, n)
	interval := time.Second / time.Duration(rate)
	t0 := time.Now()
	for i := range n {
		if due := t0.Add(time.Duration(i) * interval); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
		if i%256 == 0 && ctx.Err() != nil {
			break
		}
		ops = append(ops, g.do(mixed[i%len(mixed)]))
	}
	el := time.Since(t0).Seconds()
	return ops, float64(len(ops)) / el
}

// race makes n new directories and files files in each right after its
// mkdir, before any watcher can have armed it.
func (g *generator) race(n, files int) []op {
	ops := make([]op, 0, n*(files+1))
	for range n {
		d := g.name("race")
		o := op{kind: opMkdir, path: d, start: time.Now()}
		if err := os.Mkdir(d, 0o755); err != nil {
			g.fails++
			continue
		}
		ops = append(ops, o)
		for j := range files {
			p := filepath.Join(d, fmt.Sprintf("f%02d", j))
			fo := op{kind: opCreate, path: p, start: time.Now()}
			if err := os.WriteFile(p, g.line, 0o644); err != nil {
				g.fails++
			}
			ops = append(ops, fo)
		}
	}
	return ops
}

// deepTree makes n directories under dir, 2 levels, and returns them.
func deepTree(dir string, n int) ([]string, error) {
	fan := 1
	for fan*fan < n {
		fan++
	}
	dirs := make([]string, 0, n)
	for i := 0; len(dirs) < n; i++ {
		top := filepath.Join(dir, fmt.Sprintf("t%04d", i))
		if err := os.Mkdir(top, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		dirs = append(dirs, top)
		for j := 0; j < fan-1 && len(dirs) < n; j++ {
			d := filepath.Join(top, fmt.Sprintf("s%04d", j))
			if err := os.Mkdir(d, 0o755); err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}
