// Package bench is `fso bench`: it runs the FSO pipeline on a temporary
// tree, makes changes there whose ground truth it keeps, reads the audit log
// back and reports what the pipeline saw, how fast and at what cost.
//
// # What it measures
//
// The pipeline runs as child processes of the benchmark (`fso up`, or with
// a remote broker `fso agent`), so that the CPU time and memory read from
// /proc/PID are FSO's own and not the workload generator's. Each workload
// ([Burst], create-only burst, new-directory race, paced ladder) is
// checked op by op against the audit log: seen (any event names the op's
// path), right type, duplicates (a record's agent and seq twice, or a second
// event of the op's type for its path), and the latency from the op's start
// to its first event's recorded_at, which the recorder stamps just before
// the fsync that makes the line durable. The deep tree starts a fresh
// pipeline on many directories and times how long until a file created in
// any of a sample of them is recorded.
package bench
