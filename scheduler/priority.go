package scheduler

import (
	"math"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// Priorities computes Slurm's multifactor priority of every pending job at
// now, each factor broken down as sprio shows it. Every factor is
// normalized to [0,1], multiplied by its weight and rounded:
//
//   - Age: time since the job became eligible (submission, or --begin
//     when later) over MaxAgeSec, capped at 1 (0 when MaxAgeSec <= 0 or
//     the job is not eligible yet).
//   - FairShare: the Fair Tree factor of the job's user leaf.
//   - JobSize: as Slurm, the mean of nodes/cluster nodes and
//     CPUs/cluster CPUs (CPUs = CPUsPerNode * nodes, every node counted);
//     FavorSmall uses 1 minus that, so a whole-cluster job gets 0.
//   - PartPrio: the partition's PriorityTier over the largest one.
//   - QOSPrio: the QoS's Priority over the largest one.
//
// Priority is their sum minus nice, never below 1 (0 marks held jobs).
// Partition and QOS are reported resolved: the default partition for
// jobs naming none; the association's (or its accounts') default QoS,
// else SchedConfig.DefaultQOS, for jobs naming no QoS. Account is the
// job's as submitted. Unknown partitions and QoS give a 0 factor.
func Priorities(now time.Time, st State) map[uint64]api.PriorityFactors {
	c, pending := newPrioCalc(now, st)
	leafOf := make([]int32, len(pending))
	for k, j := range pending {
		leafOf[k] = c.leaf(j)
	}
	c.finish()
	// Reading the jobs twice is cheaper than keeping 100,000 breakdowns
	// in a slice until the fair tree is done.
	out := make(map[uint64]api.PriorityFactors, len(pending))
	for k, j := range pending {
		pf := c.partial(j, leafOf[k])
		pf.FairShare = c.fairShare(leafOf[k])
		pf.Priority = max(pf.Priority+pf.FairShare, 1)
		out[j.ID] = pf
	}
	return out
}

// PriorityValues is the Priority that Priorities gives each job of
// st.PendingJobs(), in that order, without the breakdown and its map: the
// scheduling pass needs only the values, and a map of 100,000 breakdowns
// costs more than computing them. Each job is read once.
func PriorityValues(now time.Time, st State) []int64 {
	c, pending := newPrioCalc(now, st)
	out := make([]int64, len(pending))
	leafOf := make([]int32, len(pending))
	for k, j := range pending {
		leafOf[k] = c.leaf(j)
		out[k] = c.partial(j, leafOf[k]).Priority
	}
	c.finish()
	for k := range out {
		out[k] = max(out[k]+c.fairShare(leafOf[k]), 1)
	}
	return out
}

// prioCalc holds what one calculation shares between jobs. Fair-share
// factors are known only once every pending job's leaf exists (users
// without an association add leaves, changing every factor), so a job's
// fair-share is added after finish.
type prioCalc struct {
	now    time.Time
	st     State
	cfg    api.SchedConfig
	tree   *fairTree
	parts  map[string]*api.Partition
	def    *api.Partition
	maxAge float64
	// Partition and QoS normalization; zero maxima disable the factor.
	maxTier, maxQOS           int
	clusterNodes, clusterCPUs float64
	// The last lookups: consecutive jobs mostly share them.
	lastPart, lastQOSName, lastAcct, lastUser string
	lastPt                                    *api.Partition
	lastQOS                                   *api.QOS
	lastLeaf                                  int32
}

func newPrioCalc(now time.Time, st State) (*prioCalc, []*api.Job) {
	pending := st.PendingJobs()
	c := &prioCalc{now: now, st: st, cfg: st.SchedConfig(), tree: newFairTree(st),
		def: DefaultPartition(st), lastLeaf: -1}
	c.maxAge = float64(c.cfg.MaxAgeSec)
	parts := st.Partitions()
	c.parts = make(map[string]*api.Partition, len(parts))
	for _, p := range parts {
		c.parts[p.Name] = p
		c.maxTier = max(c.maxTier, p.PriorityTier)
	}
	for _, q := range c.tree.qos {
		c.maxQOS = max(c.maxQOS, q.Priority)
	}
	for _, n := range st.Nodes() {
		c.clusterNodes++
		c.clusterCPUs += float64(n.CPUs)
	}
	c.lastPt = c.def
	c.lastQOS = c.tree.qos[""]
	return c, pending
}

// weigh clamps a factor to [0,1] and applies its weight.
func weigh(f float64, weight int64) int64 {
	return int64(math.Round(min(max(f, 0), 1) * float64(weight)))
}

// leaf finds or adds a job's user leaf (before finish).
func (c *prioCalc) leaf(j *api.Job) int32 {
	if c.lastLeaf < 0 || j.Spec.Account != c.lastAcct || j.User != c.lastUser {
		c.lastLeaf, c.lastAcct, c.lastUser = c.tree.leaf(j.Spec.Account, j.User), j.Spec.Account, j.User
	}
	return c.lastLeaf
}

// partial computes a job's factors but fair-share; its Priority holds
// their sum minus nice.
func (c *prioCalc) partial(j *api.Job, leaf int32) api.PriorityFactors {
	w := &c.cfg.Weights
	pf := api.PriorityFactors{JobID: j.ID, User: j.User, Account: j.Spec.Account,
		Partition: j.Spec.Partition, Nice: int64(j.Spec.Nice)}
	if j.Spec.Partition != c.lastPart {
		c.lastPart, c.lastPt = j.Spec.Partition, c.def
		if j.Spec.Partition != "" {
			c.lastPt = c.parts[j.Spec.Partition]
		}
	}
	if pt := c.lastPt; pt != nil {
		pf.Partition = pt.Name
		if c.maxTier > 0 {
			pf.PartPrio = weigh(float64(pt.PriorityTier)/float64(c.maxTier), w.Partition)
		}
	}
	pf.QOS = c.tree.jobQOS(j, leaf, c.cfg.DefaultQOS)
	if pf.QOS != c.lastQOSName {
		c.lastQOSName, c.lastQOS = pf.QOS, c.tree.qos[pf.QOS]
	}
	if q := c.lastQOS; q != nil && c.maxQOS > 0 {
		pf.QOSPrio = weigh(float64(q.Priority)/float64(c.maxQOS), w.QOS)
	}
	if c.maxAge > 0 {
		pf.Age = weigh(c.now.Sub(eligibleSince(j)).Seconds()/c.maxAge, w.Age)
	}
	if c.clusterNodes > 0 && c.clusterCPUs > 0 {
		nodes := max(j.Spec.Nodes, 1)
		size := (float64(nodes)/c.clusterNodes + float64(j.Spec.CPUsPerNode()*nodes)/c.clusterCPUs) / 2
		if c.cfg.FavorSmall {
			size = 1 - size
		}
		pf.JobSize = weigh(size, w.JobSize)
	}
	pf.Priority = pf.Age + pf.JobSize + pf.PartPrio + pf.QOSPrio - pf.Nice
	return pf
}

// finish completes the fair tree once every pending job has its leaf.
func (c *prioCalc) finish() { c.tree.finish(c.now, c.st, c.cfg) }

// fairShare is a leaf's weighted fair-share factor.
func (c *prioCalc) fairShare(leaf int32) int64 {
	return weigh(c.tree.nodes[leaf].factor, c.cfg.Weights.FairShare)
}

// eligibleSince is when a job's age starts counting: Slurm ages a job
// from its eligible time, so a deferred job gains nothing while it waits
// for --begin.
func eligibleSince(j *api.Job) time.Time {
	if j.Spec.BeginTime.After(j.SubmitTime) {
		return j.Spec.BeginTime
	}
	return j.SubmitTime
}
