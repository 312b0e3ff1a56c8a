package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

// sinfo's default formats. "#" sizes a partition or node list column to
// the longest value (at least 9 wide), as sinfo computes it.
const (
	sinfoDefaultFormat     = "%#P %.5a %.10l %.6D %.6t %N"
	sinfoLongFormat        = "%#P %.5a %.10l %.10s %.4r %.8h %.10g %.6D %.11T %.11i %N"
	sinfoNodeFormat        = "%#N %.6D %#P %6t"
	sinfoNodeLongFormat    = "%#N %.6D %#P %.11T %.4c %.8z %.6m %.8d %.6w %.8f %20E"
	sinfoSummarizeFormat   = "%#P %.5a %.10l %.16F %N"
	sinfoReasonsFormat     = "%20E %9u %19H %N"
	sinfoReasonsLongFormat = "%20E %12U %19H %6t %N"
)

// nodeState is a node's state as sinfo and scontrol name it.
type nodeState struct {
	compact string // idle, mix, alloc, drain, drng, down, unk
	long    string // idle, mixed, allocated, drained, draining, down, unknown
	upper   string // scontrol: IDLE, MIXED, ALLOCATED, IDLE+DRAIN, ...
	rank    int    // Slurm's node state number (drain is a high flag bit)
	other   bool   // counted as "other" in A/I/O/T: down, drained, unknown
	alloc   bool   // counted as allocated
}

func nodeStateOf(n *api.Node) nodeState {
	const drainFlag = 0x200
	base := "IDLE"
	rank := 2
	switch {
	case n.Exclusive || (n.CPUs > 0 && n.AllocCPUs >= n.CPUs):
		base, rank = "ALLOCATED", 3
	case n.AllocCPUs > 0:
		base, rank = "MIXED", 5
	}
	switch n.SinfoState() {
	case "down":
		s := nodeState{compact: "down", long: "down", upper: "DOWN", rank: 1, other: true}
		if n.Drain {
			s.upper, s.rank = "DOWN+DRAIN", 1|drainFlag
		}
		return s
	case "unk":
		return nodeState{compact: "unk", long: "unknown", upper: "UNKNOWN", rank: 0, other: true}
	case "drng":
		return nodeState{compact: "drng", long: "draining", upper: base + "+DRAIN", rank: rank | drainFlag, other: true}
	case "drain":
		return nodeState{compact: "drain", long: "drained", upper: "IDLE+DRAIN", rank: 2 | drainFlag, other: true}
	case "alloc":
		return nodeState{compact: "alloc", long: "allocated", upper: "ALLOCATED", rank: 3, alloc: true}
	case "mix":
		return nodeState{compact: "mix", long: "mixed", upper: "MIXED", rank: 5, alloc: true}
	}
	return nodeState{compact: "idle", long: "idle", upper: "IDLE", rank: 2}
}

// nodeStateIn is nodeStateOf for a node that may be in an active MAINT
// reservation (maint): scontrol adds "+MAINT" and sinfo shows "maint"
// unless the node is allocated, mixed, down or drained, as Slurm does.
func nodeStateIn(n *api.Node, maint map[string]bool) nodeState {
	s := nodeStateOf(n)
	if maint[n.Name] {
		s.upper += "+MAINT"
		if s.compact == "idle" {
			s.compact, s.long = "maint", "maint"
		}
	}
	return s
}

// maintNodes returns the nodes of the reservations with the MAINT flag
// that are active at now.
func maintNodes(rs []api.Reservation, now time.Time) map[string]bool {
	var out map[string]bool
	for i := range rs {
		if r := &rs[i]; r.Active(now) && r.HasFlag(api.ResvFlagMaint) {
			if out == nil {
				out = map[string]bool{}
			}
			for _, n := range r.Nodes {
				out[n] = true
			}
		}
	}
	return out
}

func nodeGres(n *api.Node) string {
	if n.GPUs > 0 {
		return "gpu:" + strconv.Itoa(n.GPUs)
	}
	return "(null)"
}

func nodeFeatures(n *api.Node) string { return orNull(strings.Join(n.Features, ",")) }

func nodeReason(n *api.Node) string {
	if n.Reason == "" {
		return "none"
	}
	return n.Reason
}

// sinfoRow is one output line: a partition (or none) and a group of nodes
// that agree on every attribute the format shows.
type sinfoRow struct {
	part  *api.Partition
	nodes []*api.Node
	loc   *time.Location  // for times the row prints
	maint map[string]bool // nodes in an active MAINT reservation
}

// sinfoField is one sinfo % code.
type sinfoField struct {
	header string
	// part marks fields about the partition: they make rows per partition.
	part bool
	// key, when set, is the node attribute rows are grouped by.
	key func(n *api.Node) string
	// stateKey groups rows by node state (which needs the row's maint).
	stateKey bool
	value    func(r *sinfoRow) string
	// noCutHead: the header is printed whole (NODELIST).
	noCutHead bool
}

func partOr(r *sinfoRow, f func(p *api.Partition) string) string {
	if r.part == nil {
		return "n/a"
	}
	return f(r.part)
}

// minPlus prints one value, or the smallest with "+" when they differ.
func minPlus[T cmp.Ordered](vals []T, f func(T) string) string {
	if len(vals) == 0 {
		return "0"
	}
	lo, hi := slices.Min(vals), slices.Max(vals)
	if lo == hi {
		return f(lo)
	}
	return f(lo) + "+"
}

func rowCounts(r *sinfoRow) (alloc, idle, other int) {
	for _, n := range r.nodes {
		s := nodeStateIn(n, r.maint)
		switch {
		case s.other:
			other++
		case s.alloc:
			alloc++
		default:
			idle++
		}
	}
	return
}

func rowState(r *sinfoRow, long bool) string {
	if len(r.nodes) == 0 {
		return "n/a"
	}
	s := nodeStateIn(r.nodes[0], r.maint)
	if long {
		return s.long
	}
	return s.compact
}

func rowNames(r *sinfoRow) string {
	names := make([]string, len(r.nodes))
	for i, n := range r.nodes {
		names[i] = n.Name
	}
	return hostlist.Compress(names)
}

var sinfoCodes = map[byte]sinfoField{
	'a': {header: "AVAIL", part: true, value: func(r *sinfoRow) string {
		return partOr(r, func(p *api.Partition) string {
			if p.Up {
				return "up"
			}
			return "down"
		})
	}},
	'A': {header: "NODES(A/I)", value: func(r *sinfoRow) string {
		a, i, _ := rowCounts(r)
		return fmt.Sprintf("%d/%d", a, i)
	}},
	'b': {header: "ACTIVE_FEATURES", key: nodeFeatures, value: func(r *sinfoRow) string { return firstNode(r, nodeFeatures) }},
	'B': {header: "MAX_CPUS_PER_NODE", part: true, value: func(r *sinfoRow) string { return "UNLIMITED" }},
	'c': {header: "CPUS", key: func(n *api.Node) string { return strconv.Itoa(n.CPUs) }, value: func(r *sinfoRow) string {
		vals := make([]int, len(r.nodes))
		for i, n := range r.nodes {
			vals[i] = n.CPUs
		}
		return minPlus(vals, strconv.Itoa)
	}},
	'C': {header: "CPUS(A/I/O/T)", value: func(r *sinfoRow) string {
		var a, i, o, t int
		for _, n := range r.nodes {
			a += n.AllocCPUs
			t += n.CPUs
			if nodeStateOf(n).other {
				o += n.CPUs - n.AllocCPUs
			} else {
				i += n.CPUs - n.AllocCPUs
			}
		}
		return fmt.Sprintf("%d/%d/%d/%d", a, i, o, t)
	}},
	'd': {header: "TMP_DISK", value: func(r *sinfoRow) string { return "0" }},
	'D': {header: "NODES", value: func(r *sinfoRow) string { return strconv.Itoa(len(r.nodes)) }},
	'E': {header: "REASON", key: nodeReason, value: func(r *sinfoRow) string { return firstNode(r, nodeReason) }},
	'f': {header: "AVAIL_FEATURES", key: nodeFeatures, value: func(r *sinfoRow) string { return firstNode(r, nodeFeatures) }},
	'F': {header: "NODES(A/I/O/T)", value: func(r *sinfoRow) string {
		a, i, o := rowCounts(r)
		return fmt.Sprintf("%d/%d/%d/%d", a, i, o, len(r.nodes))
	}},
	'g': {header: "GROUPS", part: true, value: func(r *sinfoRow) string { return partOr(r, func(*api.Partition) string { return "all" }) }},
	'G': {header: "GRES", key: nodeGres, value: func(r *sinfoRow) string { return firstNode(r, nodeGres) }},
	'h': {header: "OVERSUBSCRIBE", part: true, value: func(r *sinfoRow) string { return partOr(r, func(*api.Partition) string { return "NO" }) }},
	'H': {header: "TIMESTAMP", value: func(r *sinfoRow) string { return "Unknown" }},
	'i': {header: "RESERVATION", value: func(r *sinfoRow) string { return "" }},
	'l': {header: "TIMELIMIT", part: true, value: func(r *sinfoRow) string {
		return partOr(r, func(p *api.Partition) string {
			if p.MaxTimeSec <= 0 {
				return "infinite"
			}
			return squeueSecs(p.MaxTimeSec, false)
		})
	}},
	'L': {header: "DEFAULTTIME", part: true, value: func(r *sinfoRow) string {
		return partOr(r, func(p *api.Partition) string {
			if p.DefaultTimeSec <= 0 {
				return "n/a"
			}
			return squeueSecs(p.DefaultTimeSec, false)
		})
	}},
	'm': {header: "MEMORY", key: func(n *api.Node) string { return strconv.FormatInt(n.MemoryMB, 10) }, value: func(r *sinfoRow) string {
		vals := make([]int64, len(r.nodes))
		for i, n := range r.nodes {
			vals[i] = n.MemoryMB
		}
		return minPlus(vals, func(v int64) string { return strconv.FormatInt(v, 10) })
	}},
	'n': {header: "HOSTNAMES", noCutHead: true, value: rowNames},
	'N': {header: "NODELIST", noCutHead: true, value: rowNames},
	'o': {header: "NODE_ADDR", noCutHead: true, value: rowNames},
	'p': {header: "PRIO_TIER", part: true, value: func(r *sinfoRow) string {
		return partOr(r, func(p *api.Partition) string { return strconv.Itoa(p.PriorityTier) })
	}},
	'P': {header: "PARTITION", part: true, value: nil}, // see partitionCell
	'r': {header: "ROOT", part: true, value: func(r *sinfoRow) string { return partOr(r, func(*api.Partition) string { return "no" }) }},
	'R': {header: "PARTITION", part: true, value: func(r *sinfoRow) string { return partOr(r, func(p *api.Partition) string { return p.Name }) }},
	's': {header: "JOB_SIZE", part: true, value: func(r *sinfoRow) string {
		return partOr(r, func(p *api.Partition) string {
			if p.MaxNodes <= 0 {
				return "1-infinite"
			}
			if p.MaxNodes == 1 {
				return "1"
			}
			return "1-" + strconv.Itoa(p.MaxNodes)
		})
	}},
	't': {header: "STATE", stateKey: true, value: func(r *sinfoRow) string { return rowState(r, false) }},
	'T': {header: "STATE", stateKey: true, value: func(r *sinfoRow) string { return rowState(r, true) }},
	'u': {header: "USER", value: func(r *sinfoRow) string { return "Unknown" }},
	'U': {header: "USER", value: func(r *sinfoRow) string { return "Unknown" }},
	'v': {header: "VERSION", key: func(n *api.Node) string { return n.AgentVersion }, value: func(r *sinfoRow) string {
		return firstNode(r, func(n *api.Node) string { return orNA(n.AgentVersion) })
	}},
	'w': {header: "WEIGHT", value: func(r *sinfoRow) string { return "1" }},
	'z': {header: "S:C:T", value: func(r *sinfoRow) string { return "N/A" }},
	// Stockade's attestation fields, on letters Slurm 23.11's sinfo -o
	// leaves unused (j, k, q, x, y, J, K, Q, W), so no Slurm format means
	// something else here.
	'y': {header: "TRUST", key: nodeTrust, value: func(r *sinfoRow) string { return firstNode(r, nodeTrust) }},
	'q': {header: "LAST_QUOTE", key: func(n *api.Node) string { return n.LastQuote.UTC().Format(time.RFC3339Nano) },
		value: func(r *sinfoRow) string {
			return firstNode(r, func(n *api.Node) string { return sinfoTime(n.LastQuote, r.loc) })
		}},
	'K': {header: "EK_FINGERPRINT", key: func(n *api.Node) string { return n.EKFingerprint }, value: func(r *sinfoRow) string {
		return firstNode(r, func(n *api.Node) string { return orNA(n.EKFingerprint) })
	}},
	'Q': {header: "ATTEST_ERROR", key: func(n *api.Node) string { return n.AttestError }, value: func(r *sinfoRow) string {
		return firstNode(r, func(n *api.Node) string {
			if n.AttestError == "" {
				return "none"
			}
			return safeText(n.AttestError, 0)
		})
	}},
}

// sinfoTime prints a time as %H does ("Unknown" when never).
func sinfoTime(t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.Local
	}
	return slurmDate(t, loc, "Unknown")
}

func orNA(s string) string {
	if s == "" {
		return "N/A"
	}
	return s
}

func firstNode(r *sinfoRow, f func(n *api.Node) string) string {
	if len(r.nodes) == 0 {
		return "n/a"
	}
	return f(r.nodes[0])
}

// partitionCell is %P: the name with "*" for the default partition, the
// star replacing the last character when the name fills the field.
func partitionCell(r *sinfoRow, width int) string {
	if r.part == nil {
		return "n/a"
	}
	name := r.part.Name
	if r.part.Default {
		if len(name) < width || width == 0 {
			name += "*"
		} else {
			name = name[:width-1] + "*"
		}
	}
	return name
}

// sinfoView is how sinfo was asked to show the cluster.
type sinfoView struct {
	format string
	// nodeOriented is -N: one line per node (and partition, if shown).
	nodeOriented bool
	// showEmpty prints partitions without nodes (not when filtering).
	showEmpty bool
	noHeader  bool
	// dateLine is -l's leading date.
	dateLine time.Time
	loc      *time.Location
	// maint holds the nodes of active MAINT reservations.
	maint map[string]bool
}

// sinfoFilter selects partitions and nodes.
type sinfoFilter struct {
	partitions []string
	nodes      map[string]bool
	states     map[string]bool // compact states; "drain" covers drng
	responding bool
	dead       bool
}

func (f *sinfoFilter) node(n *api.Node, maint map[string]bool) bool {
	if f.nodes != nil && !f.nodes[n.Name] {
		return false
	}
	st := nodeStateIn(n, maint)
	if f.states != nil && !f.states[st.compact] {
		return false
	}
	dead := n.State != api.NodeUp
	if (f.responding && dead) || (f.dead && !dead) {
		return false
	}
	return true
}

// sinfoNodeStates maps -t spellings to compact states.
var sinfoNodeStates = map[string][]string{
	"idle": {"idle"}, "mix": {"mix"}, "mixed": {"mix"}, "alloc": {"alloc"}, "allocated": {"alloc"},
	"drain": {"drain", "drng"}, "drained": {"drain"}, "drng": {"drng"}, "draining": {"drng"},
	"down": {"down"}, "unk": {"unk"}, "unknown": {"unk"}, "maint": {"maint"},
	"all": {"idle", "mix", "alloc", "drain", "drng", "down", "unk", "maint"},
}

func parseNodeStates(items []string) (map[string]bool, error) {
	if len(items) == 0 {
		return nil, nil
	}
	out := map[string]bool{}
	for _, it := range items {
		states, ok := sinfoNodeStates[strings.ToLower(it)]
		if !ok {
			return nil, fmt.Errorf("Invalid node state specified: %s", it)
		}
		for _, s := range states {
			out[s] = true
		}
	}
	return out, nil
}

// renderSinfo groups nodes into rows and prints them. Unknown codes are
// returned as errors to print, and skipped, as sinfo does.
func renderSinfo(v sinfoView, f *sinfoFilter, nodes []api.Node, parts []api.Partition) (string, []string) {
	var items []fmtItem
	var bad []string
	byPart, byKey := false, []func(*api.Node) string{}
	for _, it := range parseSlurmFormat(v.format) {
		if it.code != 0 {
			fld, ok := sinfoCodes[it.code]
			if !ok {
				bad = append(bad, "Invalid node format specification: "+string(it.code))
				continue
			}
			byPart = byPart || fld.part
			if fld.key != nil {
				byKey = append(byKey, fld.key)
			}
			if fld.stateKey {
				byKey = append(byKey, func(n *api.Node) string { return nodeStateIn(n, v.maint).compact })
			}
		}
		items = append(items, it)
	}

	nodeByName := map[string]*api.Node{}
	for i := range nodes {
		nodeByName[nodes[i].Name] = &nodes[i]
	}
	// Which partitions, in their configured order.
	var shownParts []*api.Partition
	for i := range parts {
		if len(f.partitions) == 0 || slices.Contains(f.partitions, parts[i].Name) {
			shownParts = append(shownParts, &parts[i])
		}
	}

	type group struct {
		row     sinfoRow
		partIdx int
	}
	var groups []*group
	index := map[string]*group{}
	add := func(partIdx int, p *api.Partition, n *api.Node) {
		key := ""
		if byPart {
			key = strconv.Itoa(partIdx)
		}
		if v.nodeOriented {
			key += "\x00" + n.Name
		}
		for _, k := range byKey {
			key += "\x00" + k(n)
		}
		g := index[key]
		if g == nil {
			g = &group{row: sinfoRow{part: p, loc: v.loc, maint: v.maint}, partIdx: partIdx}
			index[key] = g
			groups = append(groups, g)
		}
		if !slices.Contains(g.row.nodes, n) {
			g.row.nodes = append(g.row.nodes, n)
		}
	}
	for pi, p := range shownParts {
		before := len(groups)
		for _, name := range expandNames(p.Nodes) {
			n := nodeByName[name]
			if n == nil || !f.node(n, v.maint) {
				continue
			}
			if byPart {
				add(pi, p, n)
			} else {
				add(-1, nil, n)
			}
		}
		if byPart && len(groups) == before && v.showEmpty && !v.nodeOriented {
			g := &group{row: sinfoRow{part: p, loc: v.loc, maint: v.maint}, partIdx: pi}
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		slices.SortFunc(g.row.nodes, func(a, b *api.Node) int { return compareHost(a.Name, b.Name) })
	}
	slices.SortStableFunc(groups, func(a, b *group) int {
		if v.nodeOriented {
			if r := compareHost(firstName(&a.row), firstName(&b.row)); r != 0 {
				return r
			}
			return cmp.Compare(a.partIdx, b.partIdx)
		}
		if r := cmp.Compare(a.partIdx, b.partIdx); r != 0 {
			return r
		}
		if r := cmp.Compare(groupRank(&b.row), groupRank(&a.row)); r != 0 {
			return r
		}
		return compareHost(firstName(&a.row), firstName(&b.row))
	})

	// "#" sizes the partition and node list columns to fit.
	partWidth, nodeWidth := 9, 9
	for _, g := range groups {
		if g.row.part != nil {
			w := len(g.row.part.Name)
			if g.row.part.Default {
				w++
			}
			partWidth = max(partWidth, w)
		}
		nodeWidth = max(nodeWidth, len(rowNames(&g.row)))
	}
	width := func(it fmtItem) int {
		switch {
		case it.auto && (it.code == 'P' || it.code == 'R'):
			return partWidth
		case it.auto && (it.code == 'N' || it.code == 'n' || it.code == 'o'):
			return nodeWidth
		}
		return it.width
	}

	var b strings.Builder
	if !v.dateLine.IsZero() && !v.noHeader {
		b.WriteString(ctimeLine(v.dateLine, v.loc) + "\n")
	}
	if !v.noHeader {
		for _, it := range items {
			if it.code != 0 {
				fld := sinfoCodes[it.code]
				b.WriteString(padStr(fld.header, width(it), it.right, !fld.noCutHead))
			}
			b.WriteString(it.suffix)
		}
		b.WriteByte('\n')
	}
	for _, g := range groups {
		for _, it := range items {
			if it.code != 0 {
				w := width(it)
				var val string
				if it.code == 'P' {
					val = partitionCell(&g.row, w)
				} else {
					val = sinfoCodes[it.code].value(&g.row)
				}
				b.WriteString(padStr(val, w, it.right, true))
			}
			b.WriteString(it.suffix)
		}
		b.WriteByte('\n')
	}
	return b.String(), bad
}

func firstName(r *sinfoRow) string {
	if len(r.nodes) == 0 {
		return ""
	}
	return r.nodes[0].Name
}

func groupRank(r *sinfoRow) int {
	if len(r.nodes) == 0 {
		return -1
	}
	return nodeStateOf(r.nodes[0]).rank
}

// expandNames expands partition node entries, each of which may be a host
// list expression; bad entries are kept as written.
func expandNames(entries []string) []string {
	var out []string
	for _, e := range entries {
		names, err := hostlist.Expand(e)
		if err != nil {
			out = append(out, e)
			continue
		}
		out = append(out, names...)
	}
	return out
}

// compareHost orders host names by prefix, then numeric suffix, so node2
// sorts before node10.
func compareHost(a, b string) int {
	pa, na := splitDigits(a)
	pb, nb := splitDigits(b)
	if r := cmp.Compare(pa, pb); r != 0 {
		return r
	}
	if len(na) != len(nb) && na != "" && nb != "" {
		x, _ := strconv.ParseUint(na, 10, 64)
		y, _ := strconv.ParseUint(nb, 10, 64)
		if r := cmp.Compare(x, y); r != 0 {
			return r
		}
	}
	return cmp.Compare(a, b)
}

func splitDigits(s string) (string, string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	return s[:i], s[i:]
}

// sinfoJSON renders nodes and partitions as sinfo --json does.
func sinfoJSON(nodes []api.Node, parts []api.Partition) ([]byte, error) {
	type jsonNode struct {
		Name          string   `json:"name"`
		Hostname      string   `json:"hostname"`
		State         []string `json:"state"`
		CPUs          int      `json:"cpus"`
		AllocCPUs     int      `json:"alloc_cpus"`
		AllocIdleCPUs int      `json:"alloc_idle_cpus"`
		RealMemory    int64    `json:"real_memory"`
		AllocMemory   int64    `json:"alloc_memory"`
		Gres          string   `json:"gres"`
		GresUsed      string   `json:"gres_used"`
		Features      []string `json:"features"`
		Partitions    []string `json:"partitions"`
		Reason        string   `json:"reason"`
		BootTime      int64    `json:"boot_time"`
		SlurmdStart   int64    `json:"slurmd_start_time"`
		Architecture  string   `json:"architecture"`
		OS            string   `json:"operating_system"`
		Version       string   `json:"version"`
	}
	type jsonPart struct {
		Name           string `json:"name"`
		Nodes          string `json:"nodes"`
		TotalNodes     int    `json:"total_nodes"`
		TotalCPUs      int    `json:"total_cpus"`
		State          string `json:"state"`
		Default        bool   `json:"default"`
		MaxTime        *int64 `json:"max_time"`     // minutes; null: infinite
		DefaultTime    *int64 `json:"default_time"` // minutes; null: none
		MaxNodes       *int   `json:"max_nodes"`    // null: unlimited
		DefMemPerCPU   int64  `json:"def_mem_per_cpu"`
		PriorityTier   int    `json:"priority_tier"`
		AvailableNodes int    `json:"idle_nodes"`
	}
	nodeParts := map[string][]string{}
	cpus := map[string]int{}
	for _, p := range parts {
		for _, n := range expandNames(p.Nodes) {
			nodeParts[n] = append(nodeParts[n], p.Name)
		}
	}
	out := struct {
		Nodes      []jsonNode `json:"nodes"`
		Partitions []jsonPart `json:"partitions"`
	}{Nodes: []jsonNode{}, Partitions: []jsonPart{}}
	idle := map[string]bool{}
	for i := range nodes {
		n := &nodes[i]
		cpus[n.Name] = n.CPUs
		st := nodeStateOf(n)
		idle[n.Name] = st.compact == "idle"
		gresUsed := ""
		if n.GPUs > 0 {
			gresUsed = fmt.Sprintf("gpu:%d", n.AllocGPUs)
		}
		gres := nodeGres(n)
		if gres == "(null)" {
			gres = ""
		}
		out.Nodes = append(out.Nodes, jsonNode{
			Name: n.Name, Hostname: n.Name, State: strings.Split(st.upper, "+"), CPUs: n.CPUs,
			AllocCPUs: n.AllocCPUs, AllocIdleCPUs: n.CPUs - n.AllocCPUs, RealMemory: n.MemoryMB,
			AllocMemory: n.AllocMemoryMB, Gres: gres, GresUsed: gresUsed, Features: append([]string{}, n.Features...),
			Partitions: append([]string{}, nodeParts[n.Name]...), Reason: n.Reason,
			BootTime: unixOrZero(n.BootTime), SlurmdStart: unixOrZero(n.RegisteredAt),
			Architecture: n.Arch, OS: n.OS, Version: n.AgentVersion,
		})
	}
	for _, p := range parts {
		names := expandNames(p.Nodes)
		jp := jsonPart{
			Name: p.Name, Nodes: hostlist.Compress(names), TotalNodes: len(names), Default: p.Default,
			DefMemPerCPU: p.DefMemPerCPUMB, PriorityTier: p.PriorityTier, State: "DOWN",
		}
		if p.Up {
			jp.State = "UP"
		}
		for _, n := range names {
			jp.TotalCPUs += cpus[n]
			if idle[n] {
				jp.AvailableNodes++
			}
		}
		if p.MaxTimeSec > 0 {
			m := p.MaxTimeSec / 60
			jp.MaxTime = &m
		}
		if p.DefaultTimeSec > 0 {
			m := p.DefaultTimeSec / 60
			jp.DefaultTime = &m
		}
		if p.MaxNodes > 0 {
			m := p.MaxNodes
			jp.MaxNodes = &m
		}
		out.Partitions = append(out.Partitions, jp)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
