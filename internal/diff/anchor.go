package diff

import (
	"sort"
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"
)

// lineEdits returns line edits from old to new. Lines that occur exactly
// once in each side are matched first (as patience diff does) and the
// stretches between them diffed on their own, so a large file with many
// scattered changes stays within the bounded search of the underlying
// diff instead of degrading into "replace everything".
func lineEdits(old, new string) []udiff.Edit {
	ol, oOff := lines(old)
	nl, nOff := lines(new)
	type pos struct{ o, n, oc, nc int }
	seen := make(map[string]*pos, len(ol))
	for i, l := range ol {
		p := seen[l]
		if p == nil {
			p = &pos{o: i}
			seen[l] = p
		}
		p.oc++
	}
	for i, l := range nl {
		if p := seen[l]; p != nil {
			if p.nc == 0 {
				p.n = i
			}
			p.nc++
		}
	}
	// Unique pairs in old order; keep the longest run increasing in new.
	var pairs [][2]int
	for i, l := range ol {
		if p := seen[l]; p.oc == 1 && p.nc == 1 {
			pairs = append(pairs, [2]int{i, p.n})
		}
	}
	anchors := increasing(pairs)
	var edits []udiff.Edit
	po, pn := 0, 0 // start of the stretch, in lines
	flush := func(eo, en int) {
		if po == eo && pn == en {
			return
		}
		so, sn := old[oOff[po]:oOff[eo]], new[nOff[pn]:nOff[en]]
		for _, e := range udiff.Lines(so, sn) {
			e.Start += oOff[po]
			e.End += oOff[po]
			edits = append(edits, e)
		}
	}
	for _, a := range anchors {
		flush(a[0], a[1])
		po, pn = a[0]+1, a[1]+1
	}
	flush(len(ol), len(nl))
	return edits
}

// lines splits s after each "\n" and returns the line start offsets, with
// len(s) appended.
func lines(s string) ([]string, []int) {
	ls := strings.SplitAfter(s, "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	off := make([]int, 0, len(ls)+1)
	at := 0
	for _, l := range ls {
		off = append(off, at)
		at += len(l)
	}
	return ls, append(off, at)
}

// increasing returns a longest subsequence of pairs (sorted by [0]) whose
// [1] increases.
func increasing(pairs [][2]int) [][2]int {
	var tails []int // index into pairs of the last element of a run of each length
	prev := make([]int, len(pairs))
	for i, p := range pairs {
		k := sort.Search(len(tails), func(j int) bool { return pairs[tails[j]][1] >= p[1] })
		if k > 0 {
			prev[i] = tails[k-1]
		} else {
			prev[i] = -1
		}
		if k == len(tails) {
			tails = append(tails, i)
		} else {
			tails[k] = i
		}
	}
	out := make([][2]int, len(tails))
	for i, k := len(tails)-1, -1; i >= 0; i-- {
		if i == len(tails)-1 {
			k = tails[i]
		}
		out[i] = pairs[k]
		k = prev[k]
	}
	return out
}
