package sim

import (
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
)

// SyntheticConfig shapes a generated workload.
type SyntheticConfig struct {
	Jobs        int
	Nodes       int
	CPUsPerNode int
	// Load is the offered load the arrival rate is set for (0: 0.9).
	Load float64
	// Users is the number of distinct users (0: 100); a few of them submit
	// most jobs, as in real traces.
	Users int
	Seed  uint64
}

// Run-time range of generated jobs: log-uniform between these, so short
// jobs are many and long ones hold most of the machine.
const (
	minRunSec = 30
	maxRunSec = 24 * 3600
)

// generator draws job shapes; the same seed gives the same jobs.
type generator struct {
	r        *rand.Rand
	cpus     int
	maxNodes int // largest multi-node job, a power of two (< 2: none)
	users    *rand.Zipf
}

func newGenerator(nodes, cpusPerNode, users int, seed uint64) *generator {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed5eed5eed5eed))
	if users <= 0 {
		users = 100
	}
	// Multi-node jobs go up to 64 nodes, or a sixteenth of the machine on
	// small ones, so no single job starves the rest for long.
	maxNodes := 0
	if lim := min(64, nodes/16); lim >= 2 {
		maxNodes = 1 << (bits.Len(uint(lim)) - 1)
	}
	return &generator{r: r, cpus: cpusPerNode, maxNodes: maxNodes, users: rand.NewZipf(r, 1.2, 1, uint64(users-1))}
}

// procs draws a size: 30% serial, 60% a power of two within one node, 10%
// a power of two of whole nodes.
func (g *generator) procs() int {
	u := g.r.Float64()
	switch {
	case u < 0.30:
		return 1
	case u < 0.90 || g.maxNodes < 2:
		k := bits.Len(uint(g.cpus - 1)) // ceil(log2(cpus))
		return min(1<<g.r.IntN(k+1), g.cpus)
	}
	return (2 << g.r.IntN(bits.Len(uint(g.maxNodes))-1)) * g.cpus
}

// times draws a run time and a requested limit: most users overestimate
// (up to 4×), a fifth ask for the maximum, and 5% underestimate and are
// killed at their limit. Limits are whole minutes, as sbatch takes them.
func (g *generator) times() (run, req int64) {
	run = int64(math.Exp(math.Log(minRunSec) + g.r.Float64()*(math.Log(maxRunSec)-math.Log(minRunSec))))
	u := g.r.Float64()
	switch {
	case u < 0.05:
		req = int64(float64(run) * (0.5 + 0.45*g.r.Float64()))
	case u < 0.25:
		req = maxRunSec
	default:
		req = int64(float64(run) * (1 + 3*g.r.Float64()))
	}
	return run, max((req+59)/60*60, 60)
}

func (g *generator) job(id uint64) Job {
	run, req := g.times()
	return Job{ID: id, Run: run, Procs: g.procs(), ReqTime: req, User: int(g.users.Uint64()) + 1, Group: 1}
}

// Synthetic generates a workload: job shapes first, then Poisson arrivals
// at the rate that makes the offered load cfg.Load on the given machine.
func Synthetic(cfg SyntheticConfig) (*Workload, error) {
	if cfg.Jobs <= 0 || cfg.Nodes <= 0 || cfg.CPUsPerNode <= 0 {
		return nil, errors.New("synthetic: jobs, nodes and CPUs per node must be positive")
	}
	load := cfg.Load
	if load <= 0 {
		load = 0.9
	}
	g := newGenerator(cfg.Nodes, cfg.CPUsPerNode, cfg.Users, cfg.Seed)
	w := &Workload{Name: "synthetic", Jobs: make([]Job, cfg.Jobs), MaxNodes: cfg.Nodes, MaxProcs: cfg.Nodes * cfg.CPUsPerNode}
	var work float64
	for i := range w.Jobs {
		w.Jobs[i] = g.job(uint64(i + 1))
		n, c := shape(w.Jobs[i].Procs, cfg.CPUsPerNode)
		work += float64(n*c) * float64(min(w.Jobs[i].Run, w.Jobs[i].ReqTime))
	}
	gap := work / (load * float64(cfg.Nodes*cfg.CPUsPerNode)) / float64(cfg.Jobs)
	at := 0.0
	for i := range w.Jobs {
		w.Jobs[i].Submit = int64(at)
		at += g.r.ExpFloat64() * gap
	}
	return w, nil
}
