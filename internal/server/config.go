package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/internal/sbatch"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Config is the cluster configuration file given with --config (TOML):
//
//	cluster_name = "stockade"         # names the CA; default "stockade"
//
//	[[partitions]]
//	name = "batch"                    # required, unique
//	nodes = "node[1-2]"               # hostlist, or "ALL": every registered node
//	default = true                    # at most one partition
//	max_time = "1-00:00:00"           # Slurm time, or "UNLIMITED" (default)
//	default_time = "1:00:00"          # default: max_time
//	max_nodes = 0                     # 0: unlimited
//	def_mem_per_cpu = "256M"          # K/M/G/T suffix, MiB without one; 0: none
//	priority_tier = 1
//	state = "UP"                      # UP or DOWN
//	require_trust = "attested"        # "", "approved" or "attested": nodes' TPM trust tier
//	allow_accounts = ["physics"]      # or "a,b"; default: every account
//	allow_qos = ["normal", "high"]    # or "a,b"; default: every QoS
//	exclusive_nodes = false           # OverSubscribe=EXCLUSIVE: whole nodes per job
//
//	[scheduler]                       # api.SchedConfig; unset keys keep the defaults
//	policy = "backfill"               # backfill, priority or fifo
//	max_age_sec = 604800
//	decay_half_life_sec = 604800      # 0: no decay
//	favor_small = false
//	gpu_weight = 10.0
//	backfill_depth = 1000
//	backfill_window_sec = 86400
//	backfill_reservations = 0
//	default_qos = "normal"
//	resv_over_run = 0                 # ResvOverRun: how long jobs run on past their reservation's
//	                                  # end (Slurm time or minutes); "UNLIMITED": never ended
//	[scheduler.weights]
//	age = 1000
//	fairshare = 10000
//	job_size = 1000
//	partition = 10000
//	qos = 10000
//
//	[[qos]]
//	name = "high"                     # required, unique
//	description = "deadlines"
//	priority = 100
//	max_jobs_per_user = 10            # running
//	max_submit_jobs_per_user = 50     # pending + running
//	max_tres_per_user = "cpu=64,node=4,gres/gpu=8,mem=256G"
//	max_tres_per_account = "cpu=256"
//	max_wall = "2-00:00:00"           # Slurm time, or minutes
//	preempt = ["low"]                 # or "a,b": QoS of this file (or default_qos)
//	preempt_mode = "requeue"          # off, requeue or cancel
//	grace_time = 120                  # seconds, or a Slurm time
//	usage_factor = 1.0
//
//	[accounting]                      # the usage ledger (/v1/acct)
//	interval = "10m"                  # seal an epoch this long after the last one
//	max_records = 10000               # or as soon as this many records are unsealed
//	[accounting.prices]               # micro-units of currency; unset keys keep the defaults
//	currency = "credit"
//	cpu_hour = 1000000                # per CPU-hour of CPU time
//	mem_gb_hour = 100000              # per GiB-hour of peak memory
//	gpu_hour = 20000000               # per allocated GPU-hour
//	[accounting.prices.split]         # basis points, summing to 10000
//	node_operator = 7000
//	cluster_operator = 2500
//	image_publisher = 500
//	charity = 0
//	[accounting.beneficiaries]
//	cluster_operator = "cluster"      # also paid every unfilled share
//	charity = ""
//	node_operators = { gpu1 = "op:alice" }            # node → beneficiary
//	image_publishers = { "ghcr.io/acme/" = "pub:acme" } # image prefix → beneficiary
//
//	[chain]                           # where epochs are anchored; default: the dev chain
//	rpc_url = "https://node:8545"     # a chain node's JSON-RPC URL (http, https, ws, wss)
//	chain_id = 1                      # the node must be on this chain; 0: whichever it is
//	contract = "0x…"                  # the anchor contract; empty: the leader deploys one and records it
//	key_file = "/etc/stockade/anchor.key" # the contract owner's key (hex, 0600); default: the cluster's
//	dev = true                        # the dev chain: geth --dev run by a controller (the default without rpc_url)
//	dev_http = "127.0.0.1:8545"       # its JSON-RPC address; default: the API's listen host, port 8545
//	dev_period = "0s"                 # its block interval, whole seconds; 0: a block per transaction
//
// Times may also be integers (minutes, as in slurm.conf). Unknown keys are
// errors. The leader applies the partitions, the scheduler table and the
// QoS whenever they differ from the replicated state, so every controller
// should be given the same file; QoS not in the file are managed with
// sacctmgr. The default QoS always exists: the leader creates it when
// missing. The [accounting] prices and beneficiaries are applied as a new
// price version when the file's content differs from what the file last
// applied, so a later change by an admin (POST /v1/acct/prices) stands
// until the file changes. Without --config the cluster has one default
// partition "batch" holding every registered node, the default scheduler
// configuration and the default prices. The cluster's anchoring key
// (anchor-key in the data directory, made at bootstrap and given to every
// controller that joins) signs the anchors unless key_file names another;
// the dev chain runs on one controller only (see Options.DevChain).
type Config struct {
	ClusterName string
	Partitions  []PartitionConfig
	// Scheduler is the [scheduler] table over api.DefaultSchedConfig.
	Scheduler api.SchedConfig
	// ResvOverRun is the [scheduler] table's resv_over_run: how long a job
	// that started in a reservation may run past its end before the
	// leader ends it (scheduler.OverRunUnlimited: never). It is the
	// leader's own setting, not replicated.
	ResvOverRun time.Duration
	// QOS are the [[qos]] tables.
	QOS []api.QOS
	// Accounting is the [accounting] table.
	Accounting AcctConfig
	// Chain is the [chain] table.
	Chain ChainConfig
}

// ChainConfig is the [chain] table: an external chain (RPCURL) or the
// dev chain (Dev), never both.
type ChainConfig struct {
	RPCURL   string
	ChainID  uint64 // 0: the node's
	Contract string // "": deploy one and record it
	KeyFile  string // "": the cluster's anchoring key
	Dev      bool
	// DevHTTP is the dev chain's JSON-RPC address; "": the API's listen
	// host, port DefaultDevChainPort.
	DevHTTP   string
	DevPeriod time.Duration
}

// DefaultDevChainPort is the dev chain's JSON-RPC port when dev_http does
// not say (geth's).
const DefaultDevChainPort = 8545

// AcctConfig is the [accounting] table.
type AcctConfig struct {
	// Interval and MaxRecords say when the leader seals an epoch: once
	// Interval has passed since the last seal, or as soon as MaxRecords
	// records are unsealed (also the most one epoch holds).
	Interval   time.Duration
	MaxRecords int
	// Prices and Beneficiaries are nil when the file leaves them out.
	Prices        *accounting.PriceTable
	Beneficiaries *accounting.Beneficiaries
}

// Sealing defaults and bounds.
const (
	defaultSealInterval = 10 * time.Minute
	defaultSealRecords  = 10000
	maxSealRecords      = 1_000_000
)

func defaultAcctConfig() AcctConfig {
	return AcctConfig{Interval: defaultSealInterval, MaxRecords: defaultSealRecords}
}

// PartitionConfig is one [[partitions]] table. Partition.Nodes is the
// expanded host list, empty when AllNodes.
type PartitionConfig struct {
	api.Partition
	AllNodes bool
}

// DefaultConfig is the configuration used without --config.
func DefaultConfig() *Config {
	return &Config{ClusterName: "stockade", Partitions: []PartitionConfig{{
		Partition: api.Partition{Name: "batch", Default: true, Up: true},
		AllNodes:  true,
	}}, Scheduler: api.DefaultSchedConfig(), Accounting: defaultAcctConfig(), Chain: ChainConfig{Dev: true}}
}

// LoadConfig reads and parses a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var partitionNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`) })

// nodeNameRE is what a node name may be: it becomes a certificate CN and a
// path component on the agent.
var nodeNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })

// ParseConfig parses the TOML text of a config file.
func ParseConfig(data []byte) (*Config, error) {
	var raw struct {
		ClusterName *string          `toml:"cluster_name"`
		Partitions  []map[string]any `toml:"partitions"`
		Scheduler   toml.Primitive   `toml:"scheduler"`
		QOS         []map[string]any `toml:"qos"`
		Accounting  toml.Primitive   `toml:"accounting"`
		Chain       toml.Primitive   `toml:"chain"`
	}
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, oneLine(err)
	}
	c := &Config{ClusterName: "stockade", Scheduler: api.DefaultSchedConfig(), Accounting: defaultAcctConfig(),
		Chain: ChainConfig{Dev: true}}
	if md.IsDefined("scheduler") {
		// resv_over_run is the controllers' own, not api.SchedConfig's.
		var own struct {
			ResvOverRun any `toml:"resv_over_run"`
		}
		if err := md.PrimitiveDecode(raw.Scheduler, &own); err != nil {
			return nil, fmt.Errorf("scheduler: %w", oneLine(err))
		}
		if c.ResvOverRun, err = resvOverRun(own.ResvOverRun); err != nil {
			return nil, err
		}
		if err := md.PrimitiveDecode(raw.Scheduler, &c.Scheduler); err != nil {
			return nil, fmt.Errorf("scheduler: %w", oneLine(err))
		}
	}
	if md.IsDefined("accounting") {
		if c.Accounting, err = parseAcct(md, raw.Accounting); err != nil {
			return nil, err
		}
	}
	if md.IsDefined("chain") {
		if c.Chain, err = parseChain(md, raw.Chain); err != nil {
			return nil, err
		}
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%s: unknown key", und[0].String())
	}
	if err := raftstore.ValidateSchedConfig(&c.Scheduler); err != nil {
		return nil, fmt.Errorf("scheduler.%w", err)
	}
	qosNames := map[string]bool{}
	for i, tbl := range raw.QOS {
		q, err := parseQOS(tbl)
		if err != nil {
			return nil, fmt.Errorf("qos[%d].%w", i, err)
		}
		if qosNames[q.Name] {
			return nil, fmt.Errorf("qos[%d].name: duplicate qos %q", i, q.Name)
		}
		qosNames[q.Name] = true
		c.QOS = append(c.QOS, q)
	}
	for i, q := range c.QOS {
		for _, p := range q.Preempt {
			if !qosNames[p] && p != c.Scheduler.DefaultQOS {
				return nil, fmt.Errorf("qos[%d].preempt: qos %q is not defined in this file", i, p)
			}
			if p == q.Name {
				return nil, fmt.Errorf("qos[%d].preempt: qos %s cannot preempt itself", i, p)
			}
		}
	}
	if raw.ClusterName != nil {
		if !partitionNameRE().MatchString(*raw.ClusterName) {
			return nil, fmt.Errorf("cluster_name: invalid name %q", *raw.ClusterName)
		}
		c.ClusterName = *raw.ClusterName
	}
	seen := map[string]bool{}
	var def string
	for i, tbl := range raw.Partitions {
		p, err := parsePartition(tbl)
		if err != nil {
			return nil, fmt.Errorf("partitions[%d].%w", i, err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("partitions[%d].name: duplicate partition %q", i, p.Name)
		}
		seen[p.Name] = true
		if p.Default {
			if def != "" {
				return nil, fmt.Errorf("partitions[%d].default: partition %q is already the default", i, def)
			}
			def = p.Name
		}
		c.Partitions = append(c.Partitions, p)
	}
	return c, nil
}

// keyError is an error about one key; the caller prefixes the table.
type keyError struct {
	key string
	msg string
}

func (e *keyError) Error() string { return e.key + ": " + e.msg }

func kerr(key, format string, args ...any) error {
	return &keyError{key: key, msg: fmt.Sprintf(format, args...)}
}

func parsePartition(tbl map[string]any) (PartitionConfig, error) {
	p := PartitionConfig{Partition: api.Partition{Up: true}}
	keys := make([]string, 0, len(tbl))
	for k := range tbl {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report errors in a stable order
	var maxSet, defSet bool
	for _, k := range keys {
		v := tbl[k]
		var err error
		switch k {
		case "name":
			s, ok := v.(string)
			if !ok || !partitionNameRE().MatchString(s) {
				return p, kerr(k, "invalid partition name %v", quoteAny(v))
			}
			p.Name = s
		case "nodes":
			s, ok := v.(string)
			if !ok {
				return p, kerr(k, "want a host list string, got %v", quoteAny(v))
			}
			if strings.EqualFold(strings.TrimSpace(s), "ALL") {
				p.AllNodes = true
				continue
			}
			names, err := hostlist.Expand(s)
			if err != nil {
				return p, kerr(k, "invalid host list %q: %v", s, err)
			}
			for _, n := range names {
				if !nodeNameRE().MatchString(n) {
					return p, kerr(k, "invalid node name %q", n)
				}
			}
			slices.Sort(names)
			p.Nodes = slices.Compact(names)
		case "default":
			b, ok := v.(bool)
			if !ok {
				return p, kerr(k, "want true or false, got %v", quoteAny(v))
			}
			p.Default = b
		case "max_time":
			p.MaxTimeSec, err = timeValue(k, v)
			maxSet = true
		case "default_time":
			p.DefaultTimeSec, err = timeValue(k, v)
			defSet = true
		case "max_nodes":
			n, ok := v.(int64)
			if !ok || n < 0 || n > 1<<20 {
				return p, kerr(k, "want a count >= 0, got %v", quoteAny(v))
			}
			p.MaxNodes = int(n)
		case "def_mem_per_cpu":
			p.DefMemPerCPUMB, err = memValue(k, v)
		case "priority_tier":
			n, ok := v.(int64)
			if !ok || n < 0 || n > 65533 {
				return p, kerr(k, "want 0..65533, got %v", quoteAny(v))
			}
			p.PriorityTier = int(n)
		case "state":
			s, _ := v.(string)
			switch strings.ToUpper(s) {
			case "UP":
				p.Up = true
			case "DOWN":
				p.Up = false
			default:
				return p, kerr(k, "want UP or DOWN, got %v", quoteAny(v))
			}
		case "require_trust":
			s, _ := v.(string)
			switch t := api.Trust(strings.ToLower(s)); t {
			case "", api.TrustNone:
				p.RequireTrust = ""
			case api.TrustApproved, api.TrustAttested:
				p.RequireTrust = t
			default:
				return p, kerr(k, "want approved or attested, got %v", quoteAny(v))
			}
		case "allow_accounts":
			p.AllowAccounts, err = namesValue(k, v)
		case "allow_qos":
			p.AllowQOS, err = namesValue(k, v)
		case "exclusive_nodes":
			b, ok := v.(bool)
			if !ok {
				return p, kerr(k, "want true or false, got %v", quoteAny(v))
			}
			p.ExclusiveNodes = b
		default:
			return p, kerr(k, "unknown key")
		}
		if err != nil {
			return p, err
		}
	}
	if p.Name == "" {
		return p, kerr("name", "required")
	}
	if !p.AllNodes && len(p.Nodes) == 0 {
		return p, kerr("nodes", "required (a host list, or \"ALL\")")
	}
	if maxSet && defSet && p.MaxTimeSec > 0 && (p.DefaultTimeSec == 0 || p.DefaultTimeSec > p.MaxTimeSec) {
		return p, kerr("default_time", "exceeds max_time")
	}
	return p, nil
}

// namesValue reads a list of account or QoS names: a TOML array of
// strings or one comma-separated string.
func namesValue(key string, v any) ([]string, error) {
	var items []string
	switch t := v.(type) {
	case string:
		items = strings.Split(t, ",")
	case []any:
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, kerr(key, "want names, got %v", quoteAny(e))
			}
			items = append(items, s)
		}
	default:
		return nil, kerr(key, "want a list of names, got %v", quoteAny(v))
	}
	var out []string
	for _, s := range items {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !partitionNameRE().MatchString(s) {
			return nil, kerr(key, "invalid name %q", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func intValue(key string, v any, maxV int64) (int64, error) {
	n, ok := v.(int64)
	if !ok || n < 0 || n > maxV {
		return 0, kerr(key, "want a whole number 0..%d, got %v", maxV, quoteAny(v))
	}
	return n, nil
}

// tresValue reads Slurm's TRES syntax: "cpu=4,node=2,gres/gpu=1,mem=8G".
func tresValue(key string, v any) (api.TRES, error) {
	var t api.TRES
	s, ok := v.(string)
	if !ok {
		return t, kerr(key, "want a string such as \"cpu=4,mem=8G\", got %v", quoteAny(v))
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, ok := strings.Cut(item, "=")
		if !ok {
			return t, kerr(key, "%q is not name=value", item)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.TrimSpace(val)
		if name == "mem" {
			mb, err := sbatch.ParseMemory(val)
			if err != nil || mb < 0 {
				return t, kerr(key, "invalid mem %q", val)
			}
			t.MemoryMB = mb
			continue
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 || n > 1<<30 {
			return t, kerr(key, "invalid %s count %q", name, val)
		}
		switch name {
		case "cpu":
			t.CPUs = n
		case "node":
			t.Nodes = n
		case "gres/gpu", "gpu":
			t.GPUs = n
		default:
			return t, kerr(key, "unknown resource %q (want cpu, node, gres/gpu or mem)", name)
		}
	}
	return t, nil
}

// parseQOS reads one [[qos]] table.
func parseQOS(tbl map[string]any) (api.QOS, error) {
	var q api.QOS
	keys := make([]string, 0, len(tbl))
	for k := range tbl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := tbl[k]
		var err error
		var n int64
		switch k {
		case "name":
			s, ok := v.(string)
			if !ok || !partitionNameRE().MatchString(s) {
				return q, kerr(k, "invalid qos name %v", quoteAny(v))
			}
			q.Name = s
		case "description":
			s, ok := v.(string)
			if !ok {
				return q, kerr(k, "want a string, got %v", quoteAny(v))
			}
			q.Description = s
		case "priority":
			n, err = intValue(k, v, 1<<31-1)
			q.Priority = int(n)
		case "max_jobs_per_user":
			n, err = intValue(k, v, 1<<30)
			q.MaxJobsPerUser = int(n)
		case "max_submit_jobs_per_user":
			n, err = intValue(k, v, 1<<30)
			q.MaxSubmitJobsPerUser = int(n)
		case "max_tres_per_user":
			q.MaxTRESPerUser, err = tresValue(k, v)
		case "max_tres_per_account":
			q.MaxTRESPerAccount, err = tresValue(k, v)
		case "max_wall":
			q.MaxWallSec, err = timeValue(k, v)
		case "preempt":
			q.Preempt, err = namesValue(k, v)
		case "preempt_mode":
			s, _ := v.(string)
			switch m := strings.ToLower(s); m {
			case api.PreemptOff:
			case api.PreemptRequeue, api.PreemptCancel:
				q.PreemptMode = m
			default:
				return q, kerr(k, "want off, requeue or cancel, got %v", quoteAny(v))
			}
		case "grace_time":
			if s, ok := v.(string); ok {
				q.GraceTimeSec, err = timeValue(k, s)
			} else {
				q.GraceTimeSec, err = intValue(k, v, 1<<31-1)
			}
		case "usage_factor":
			switch f := v.(type) {
			case float64:
				q.UsageFactor = f
			case int64:
				q.UsageFactor = float64(f)
			default:
				return q, kerr(k, "want a number, got %v", quoteAny(v))
			}
		default:
			return q, kerr(k, "unknown key")
		}
		if err != nil {
			return q, err
		}
	}
	if q.Name == "" {
		return q, kerr("name", "required")
	}
	if err := raftstore.ValidateQOS(&q); err != nil {
		return q, err
	}
	return q, nil
}

func quoteAny(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v", v)
}

// resvOverRun reads [scheduler] resv_over_run as slurm.conf's
// ResvOverRun: a time (integers are minutes), or UNLIMITED; unset is 0.
func resvOverRun(v any) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	if t, ok := v.(string); ok {
		switch strings.ToUpper(strings.TrimSpace(t)) {
		case "UNLIMITED", "INFINITE", "-1":
			return scheduler.OverRunUnlimited, nil
		}
	}
	sec, err := timeValue("resv_over_run", v)
	if err != nil {
		return 0, fmt.Errorf("scheduler.%w (a time or \"UNLIMITED\")", err)
	}
	return time.Duration(sec) * time.Second, nil
}

func timeValue(key string, v any) (int64, error) {
	switch t := v.(type) {
	case int64:
		if t < 0 {
			return 0, kerr(key, "invalid time %d", t)
		}
		return t * 60, nil
	case string:
		sec, err := sbatch.ParseTime(t)
		if err != nil {
			return 0, kerr(key, "invalid time %q", t)
		}
		return sec, nil
	}
	return 0, kerr(key, "invalid time %v", quoteAny(v))
}

func memValue(key string, v any) (int64, error) {
	switch t := v.(type) {
	case int64:
		if t < 0 {
			return 0, kerr(key, "invalid size %d", t)
		}
		return t, nil
	case string:
		mb, err := sbatch.ParseMemory(strings.TrimSpace(t))
		if err != nil {
			return 0, kerr(key, "invalid size %q", t)
		}
		return mb, nil
	}
	return 0, kerr(key, "invalid size %v", quoteAny(v))
}

// desired computes the partition table and configured nodes the config
// asks for, given the nodes the state knows ("ALL" partitions take them).
func (c *Config) desired(known []*api.Node) ([]api.Partition, []api.Node) {
	var all []string
	for _, n := range known {
		all = append(all, n.Name)
	}
	configured := map[string]bool{}
	var parts []api.Partition
	for _, pc := range c.Partitions {
		p := pc.Partition
		if pc.AllNodes {
			p.Nodes = slices.Clone(all)
		} else {
			p.Nodes = slices.Clone(pc.Nodes)
			for _, n := range p.Nodes {
				configured[n] = true
			}
		}
		if p.Nodes == nil {
			p.Nodes = []string{}
		}
		parts = append(parts, p)
	}
	var nodes []api.Node
	for name := range configured {
		nodes = append(nodes, api.Node{Name: name, State: api.NodeUnknown})
	}
	slices.SortFunc(nodes, func(a, b api.Node) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(parts, func(a, b api.Partition) int { return strings.Compare(a.Name, b.Name) })
	return parts, nodes
}

// partitionsEqual compares the wanted table with the state's.
func partitionsEqual(want []api.Partition, have []*api.Partition) bool {
	if len(want) != len(have) {
		return false
	}
	for i := range want {
		w, h := want[i], *have[i]
		if w.Name != h.Name || w.Default != h.Default || w.Up != h.Up || w.MaxTimeSec != h.MaxTimeSec ||
			w.DefaultTimeSec != h.DefaultTimeSec || w.MaxNodes != h.MaxNodes ||
			w.DefMemPerCPUMB != h.DefMemPerCPUMB || w.PriorityTier != h.PriorityTier ||
			w.RequireTrust != h.RequireTrust || !slices.Equal(w.Nodes, h.Nodes) ||
			!slices.Equal(w.AllowAccounts, h.AllowAccounts) || !slices.Equal(w.AllowQOS, h.AllowQOS) ||
			w.ExclusiveNodes != h.ExclusiveNodes {
			return false
		}
	}
	return true
}

// acctTOML is the [accounting] table as written; nil means unset.
type acctTOML struct {
	Interval   *string `toml:"interval"`
	MaxRecords *int64  `toml:"max_records"`
	Prices     *struct {
		Currency  *string `toml:"currency"`
		CPUHour   *int64  `toml:"cpu_hour"`
		MemGBHour *int64  `toml:"mem_gb_hour"`
		GPUHour   *int64  `toml:"gpu_hour"`
		Split     *struct {
			NodeOperator    *int64 `toml:"node_operator"`
			ClusterOperator *int64 `toml:"cluster_operator"`
			ImagePublisher  *int64 `toml:"image_publisher"`
			Charity         *int64 `toml:"charity"`
		} `toml:"split"`
	} `toml:"prices"`
	Beneficiaries *struct {
		ClusterOperator *string           `toml:"cluster_operator"`
		Charity         *string           `toml:"charity"`
		NodeOperators   map[string]string `toml:"node_operators"`
		ImagePublishers map[string]string `toml:"image_publishers"`
	} `toml:"beneficiaries"`
}

// parseAcct reads the [accounting] table over the defaults; unknown keys
// are left for the caller's md.Undecoded check.
func parseAcct(md toml.MetaData, prim toml.Primitive) (AcctConfig, error) {
	ac := defaultAcctConfig()
	var raw acctTOML
	if err := md.PrimitiveDecode(prim, &raw); err != nil {
		return ac, fmt.Errorf("accounting: %w", oneLine(err))
	}
	if raw.Interval != nil {
		d, err := time.ParseDuration(*raw.Interval)
		if err != nil || d < time.Second {
			return ac, fmt.Errorf("accounting.interval: %q is not a duration of at least 1s (such as \"10m\")", *raw.Interval)
		}
		ac.Interval = d
	}
	if raw.MaxRecords != nil {
		if n := *raw.MaxRecords; n < 1 || n > maxSealRecords {
			return ac, fmt.Errorf("accounting.max_records: %d is not 1..%d", n, maxSealRecords)
		}
		ac.MaxRecords = int(*raw.MaxRecords)
	}
	def := accounting.DefaultPriceSet()
	if rp := raw.Prices; rp != nil {
		p := def.Prices
		setStr(&p.Currency, rp.Currency)
		setInt(&p.CPUHour, rp.CPUHour)
		setInt(&p.MemGBHour, rp.MemGBHour)
		setInt(&p.GPUHour, rp.GPUHour)
		if sp := rp.Split; sp != nil {
			for _, f := range []struct {
				name string
				v    *int64
				dst  *uint32
			}{{"node_operator", sp.NodeOperator, &p.Split.NodeOperator}, {"cluster_operator", sp.ClusterOperator, &p.Split.ClusterOperator},
				{"image_publisher", sp.ImagePublisher, &p.Split.ImagePublisher}, {"charity", sp.Charity, &p.Split.Charity}} {
				if f.v == nil {
					continue
				}
				if *f.v < 0 || *f.v > 10000 {
					return ac, fmt.Errorf("accounting.prices.split.%s: %d is not 0..10000 basis points", f.name, *f.v)
				}
				*f.dst = uint32(*f.v)
			}
		}
		if err := p.Validate(); err != nil {
			return ac, fmt.Errorf("accounting.prices.%w", err)
		}
		ac.Prices = &p
	}
	if rb := raw.Beneficiaries; rb != nil {
		b := def.Beneficiaries
		setStr(&b.ClusterOperator, rb.ClusterOperator)
		setStr(&b.Charity, rb.Charity)
		b.NodeOperators, b.ImagePublishers = rb.NodeOperators, rb.ImagePublishers
		ps := accounting.PriceSet{Prices: def.Prices, Beneficiaries: b}
		if err := raftstore.ValidatePriceSet(&ps); err != nil {
			var fe *raftstore.FieldError
			if errors.As(err, &fe) {
				return ac, fmt.Errorf("accounting.%s: %s", fe.Field, fe.Msg)
			}
			return ac, fmt.Errorf("accounting.beneficiaries: %w", err)
		}
		ac.Beneficiaries = &b
	}
	return ac, nil
}

func setStr(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func setInt(dst *int64, v *int64) {
	if v != nil {
		*dst = *v
	}
}

// chainTOML is the [chain] table as written; nil means unset.
type chainTOML struct {
	RPCURL    *string `toml:"rpc_url"`
	ChainID   *int64  `toml:"chain_id"`
	Contract  *string `toml:"contract"`
	KeyFile   *string `toml:"key_file"`
	Dev       *bool   `toml:"dev"`
	DevHTTP   *string `toml:"dev_http"`
	DevPeriod any     `toml:"dev_period"` // "5s", or whole seconds
}

// parseChain reads the [chain] table. The keys of one kind of chain are
// errors with the other, so a file cannot look like it anchors somewhere
// it does not.
func parseChain(md toml.MetaData, prim toml.Primitive) (ChainConfig, error) {
	var cc ChainConfig
	var raw chainTOML
	if err := md.PrimitiveDecode(prim, &raw); err != nil {
		return cc, fmt.Errorf("chain: %w", oneLine(err))
	}
	setStr(&cc.RPCURL, raw.RPCURL)
	setStr(&cc.Contract, raw.Contract)
	setStr(&cc.KeyFile, raw.KeyFile)
	setStr(&cc.DevHTTP, raw.DevHTTP)
	if cc.RPCURL != "" {
		if err := raftstore.ValidateChain(&accounting.ChainInfo{RPCURL: cc.RPCURL, Contract: cc.Contract}); err != nil {
			var fe *raftstore.FieldError
			if errors.As(err, &fe) {
				return cc, fmt.Errorf("chain.%s: %s", fe.Field, fe.Msg)
			}
			return cc, fmt.Errorf("chain: %w", err)
		}
	}
	if raw.ChainID != nil {
		if *raw.ChainID < 0 {
			return cc, fmt.Errorf("chain.chain_id: %d is not a chain id (0: the node's)", *raw.ChainID)
		}
		cc.ChainID = uint64(*raw.ChainID)
	}
	cc.Dev = cc.RPCURL == ""
	if raw.Dev != nil {
		if *raw.Dev && cc.RPCURL != "" {
			return cc, errors.New("chain.dev: true with rpc_url: anchor on the external chain or on the dev chain, not both")
		}
		cc.Dev = *raw.Dev
	}
	if cc.RPCURL == "" {
		for _, k := range []struct {
			name string
			set  bool
		}{{"chain_id", raw.ChainID != nil}, {"contract", raw.Contract != nil}, {"key_file", raw.KeyFile != nil}} {
			if k.set {
				return cc, fmt.Errorf("chain.%s: only with rpc_url (the dev chain's are recorded by the controller running it)", k.name)
			}
		}
	}
	if !cc.Dev {
		if raw.DevHTTP != nil || raw.DevPeriod != nil {
			return cc, errors.New("chain.dev_http: dev_http and dev_period configure the dev chain (dev = true)")
		}
		return cc, nil
	}
	if raw.DevHTTP != nil {
		if err := checkDevHTTP(cc.DevHTTP); err != nil {
			return cc, fmt.Errorf("chain.dev_http: %w", err)
		}
	}
	switch p := raw.DevPeriod.(type) {
	case nil:
	case int64:
		if p < 0 || p > 3600 {
			return cc, fmt.Errorf("chain.dev_period: %d is not 0..3600 seconds", p)
		}
		cc.DevPeriod = time.Duration(p) * time.Second
	case string:
		d, err := time.ParseDuration(p)
		if err != nil || d < 0 || d > time.Hour || d%time.Second != 0 {
			return cc, fmt.Errorf("chain.dev_period: %q is not whole seconds up to 1h (such as \"5s\")", p)
		}
		cc.DevPeriod = d
	default:
		return cc, fmt.Errorf("chain.dev_period: want a duration such as \"5s\", got %v", quoteAny(p))
	}
	return cc, nil
}

// checkDevHTTP accepts IP:port and localhost:port: the dev chain answers
// only requests whose Host is an IP address or localhost.
func checkDevHTTP(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 0..65535", addr, port)
	}
	if net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: give an IP address (or localhost), which the dev chain accepts as a Host", addr)
	}
	return nil
}
