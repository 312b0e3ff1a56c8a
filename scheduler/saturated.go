package scheduler

import "github.com/stockade-hpc/stockade/api"

// Saturated reports whether no pass over st could start a job that needs
// at least cpus CPUs on each of its nodes, nor preempt any: no usable node
// that takes new work has that many free CPUs, and no QoS may preempt.
// With cpus the least that any pending job asks for (MinCPUs,
// Plan.MinCPUs), a pass over st starts nothing, whatever the policy; it
// can still change pending reasons, priorities and start estimates. It
// costs one look at every node and QoS, none at the queue.
func Saturated(st State, cpus int) bool {
	for _, q := range st.QOSList() {
		if len(q.Preempt) > 0 {
			return false
		}
	}
	for _, n := range st.Nodes() {
		// As pool.fits: open, and the CPUs the job needs are free.
		if n.Usable() && !n.Exclusive && n.CPUs-n.AllocCPUs >= cpus {
			return false
		}
	}
	return true
}

// MinCPUs folds job j into least, the fewest CPUs per node that a set of
// jobs asks for; 0 is the empty set. Every valid job needs at least one
// CPU; a need below 1 (only a malformed spec has one) folds in as -1.
func MinCPUs(least int, j *api.Job) int {
	c := j.Spec.CPUsPerNode()
	if c < 1 {
		c = min(c, -1)
	}
	if least == 0 {
		return c
	}
	return min(least, c)
}
