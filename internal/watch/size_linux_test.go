package watch

import (
	"testing"
	"unsafe"
)

// A watched directory's node is most of the agent's memory per directory
// (docs/performance.md); 48 bytes is its allocation size class. A field
// more moves it to 64.
func TestDirSize(t *testing.T) {
	if n := unsafe.Sizeof(dir{}); n > 48 {
		t.Fatalf("dir is %d bytes, want at most 48", n)
	}
}
