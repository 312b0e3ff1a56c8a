package server

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/internal/sbatch"
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
//
// Times may also be integers (minutes, as in slurm.conf). Unknown keys are
// errors. The leader applies the partitions whenever they differ from the
// replicated state, so every controller should be given the same file.
// Without --config the cluster has one default partition "batch" holding
// every registered node.
type Config struct {
	ClusterName string
	Partitions  []PartitionConfig
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
	}}}
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

var partitionNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// nodeNameRE is what a node name may be: it becomes a certificate CN and a
// path component on the agent.
var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ParseConfig parses the TOML text of a config file.
func ParseConfig(data []byte) (*Config, error) {
	var raw struct {
		ClusterName *string          `toml:"cluster_name"`
		Partitions  []map[string]any `toml:"partitions"`
	}
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, oneLine(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%s: unknown key", und[0].String())
	}
	c := &Config{ClusterName: "stockade"}
	if raw.ClusterName != nil {
		if !partitionNameRE.MatchString(*raw.ClusterName) {
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
			if !ok || !partitionNameRE.MatchString(s) {
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
				if !nodeNameRE.MatchString(n) {
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

func quoteAny(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v", v)
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
			w.RequireTrust != h.RequireTrust || !slices.Equal(w.Nodes, h.Nodes) {
			return false
		}
	}
	return true
}
