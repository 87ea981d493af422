package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/fso-project/fso/internal/watch"
)

func TestCoalescer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name string
		in   []watch.Event
		now  time.Time // then flush what is due at now
		want string
	}{
		{"write loop then close is one create",
			[]watch.Event{{Op: watch.Create, Path: "/f", Time: at(0)}, {Op: watch.Write, Path: "/f", Time: at(1)}, {Op: watch.Write, Path: "/f", Time: at(2)}, {Op: watch.CloseWrite, Path: "/f", Time: at(3)}},
			at(3), "[create /f @0]"},
		{"modify held until close",
			[]watch.Event{{Op: watch.Write, Path: "/f", Time: at(0)}, {Op: watch.Write, Path: "/f", Time: at(5)}, {Op: watch.CloseWrite, Path: "/f", Time: at(6)}},
			at(6), "[modify /f @0]"},
		{"open writer reported after the window",
			[]watch.Event{{Op: watch.Write, Path: "/log", Time: at(0)}},
			at(50), "[modify /log @0]"},
		{"not yet due",
			[]watch.Event{{Op: watch.Write, Path: "/log", Time: at(0)}},
			at(49), "[]"},
		{"chmod of a new file folds into its create",
			[]watch.Event{{Op: watch.Create, Path: "/f", Time: at(0)}, {Op: watch.Attrib, Path: "/f", Time: at(1)}, {Op: watch.CloseWrite, Path: "/f", Time: at(2)}},
			at(2), "[create /f @0]"},
		{"delete reports the held create first",
			[]watch.Event{{Op: watch.Create, Path: "/f", Time: at(0)}, {Op: watch.Remove, Path: "/f", Time: at(1)}},
			at(1), "[create /f @0 delete /f @1]"},
		{"rename of a directory reports held changes below it",
			[]watch.Event{{Op: watch.Write, Path: "/d/f", Time: at(0)}, {Op: watch.Rename, OldPath: "/d", Path: "/e", IsDir: true, Time: at(1)}},
			at(1), "[modify /d/f @0 rename /d->/e @1]"},
		{"directories and listed entries are not held",
			[]watch.Event{{Op: watch.Create, Path: "/d", IsDir: true, Time: at(0)}, {Op: watch.Create, Path: "/d/x", Scan: true, Time: at(0)}},
			at(0), "[create /d @0 create /d/x @0]"},
		{"overflow flushes everything",
			[]watch.Event{{Op: watch.Write, Path: "/a", Time: at(0)}, {Op: watch.Overflow, Time: at(1)}},
			at(1), "[modify /a @0 overflow @1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCoalescer(50 * time.Millisecond)
			var out []change
			for _, ev := range tc.in {
				out = c.add(ev, out)
			}
			out = c.due(tc.now, out)
			var desc []string
			for _, ch := range out {
				switch {
				case ch.overflow:
					desc = append(desc, fmt.Sprintf("overflow @%d", ch.at.Sub(t0).Milliseconds()))
				case ch.oldPath != "":
					desc = append(desc, fmt.Sprintf("%s %s->%s @%d", ch.typ, ch.oldPath, ch.path, ch.at.Sub(t0).Milliseconds()))
				default:
					desc = append(desc, fmt.Sprintf("%s %s @%d", ch.typ, ch.path, ch.at.Sub(t0).Milliseconds()))
				}
			}
			if have := fmt.Sprint(desc); have != tc.want {
				t.Errorf("have %s\nwant %s", have, tc.want)
			}
		})
	}
}
