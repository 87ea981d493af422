package agent

import (
	"sync"

	"github.com/fso-project/fso/internal/watch"
)

// queue decouples reading the kernel from processing: the kernel's inotify
// queue is small (fs.inotify.max_queued_events, 16384 by default) and
// overflows, losing events, whenever its reader stalls. The pump drains the
// watcher into memory at the speed of read(2), up to max events; past that
// it stops reading, and the kernel's overflow (reported explicitly) is the
// last resort.
type queue struct {
	mu      sync.Mutex
	batches [][]watch.Event
	n       int
	max     int
	closed  bool
	ready   chan struct{} // has batches, or closed
	room    chan struct{} // below max again
}

func newQueue(max int) *queue {
	return &queue{max: max, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// pump moves batches from in until it is closed, then closes q.
func (q *queue) pump(in <-chan []watch.Event) {
	for b := range in {
		q.mu.Lock()
		for q.n >= q.max {
			q.mu.Unlock()
			<-q.room
			q.mu.Lock()
		}
		q.batches = append(q.batches, b)
		q.n += len(b)
		q.mu.Unlock()
		signal(q.ready)
	}
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.ready)
}

// take returns the queued batches and whether the queue is closed and empty.
func (q *queue) take() ([][]watch.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.batches
	q.batches, q.n = nil, 0
	signal(q.room)
	if q.closed && len(b) > 0 {
		// pump's last signal may have been merged with the one for these
		// batches: wake the caller again to learn that the queue is done.
		signal(q.ready)
	}
	return b, q.closed && len(b) == 0
}

// depth is the number of events waiting.
func (q *queue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
