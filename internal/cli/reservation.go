package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

// scontrol's reservation commands: create, update, delete and show.

// resvSpec is a parsed "create/update reservation" argument list. Unset
// fields are nil or empty.
type resvSpec struct {
	name            string
	start, end      *time.Time
	duration        *int64
	nodes           *string // as given: a host list or ALL
	nodeCnt         int
	partition       *string
	users, accounts *listSet
	flags           *listSet
}

// resvKeys are the keys scontrol takes, with the letters each needs.
var resvKeys = nm("ReservationName", 3, "StartTime", 1, "EndTime", 1, "Duration", 2, "Nodes", 5, "NodeCnt", 5,
	"NodeCount", 5, "Users", 1, "Accounts", 1, "PartitionName", 1, "Flags", 2)

// resvUnsupported are scontrol reservation keys Stockade has no data for.
var resvUnsupported = nm("Features", 2, "Licenses", 1, "CoreCnt", 2, "TRES", 2, "BurstBuffer", 1, "Watts", 1,
	"Groups", 1, "MaxStartDelay", 1, "Comment", 3, "TRESPerNode", 5)

// resvFlagsSupported are the reservation flags Stockade interprets;
// resvFlagsSlurm are Slurm's others, refused by name.
var (
	resvFlagsSupported = []string{api.ResvFlagMaint, api.ResvFlagIgnoreJobs}
	resvFlagsSlurm     = []string{"ANY_NODES", "DAILY", "FLEX", "HOURLY", "LICENSE_ONLY", "MAGNETIC",
		"NO_HOLD_JOBS_AFTER_END", "OVERLAP", "PART_NODES", "PURGE_COMP", "REPLACE", "REPLACE_DOWN", "SPEC_NODES",
		"STATIC_ALLOC", "TIME_FLOAT", "USER_DELETE", "WEEKDAY", "WEEKEND", "WEEKLY"}
)

// resvFlag checks one Flags= item (any case) and returns Slurm's spelling.
func resvFlag(f string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(f))
	switch {
	case slices.Contains(resvFlagsSupported, u):
		return u, nil
	case slices.Contains(resvFlagsSlurm, u):
		return "", fmt.Errorf("Flags=%s is not supported by Stockade (it takes MAINT and IGNORE_JOBS)", u)
	}
	return "", fmt.Errorf("Invalid reservation flag: %s (Stockade takes MAINT and IGNORE_JOBS)", f)
}

// parseResvSpec reads Key=Value arguments (case-insensitive keys; lists
// take += and -= on update).
func parseResvSpec(args []string, now time.Time, loc *time.Location) (*resvSpec, error) {
	r := &resvSpec{}
	for _, a := range args {
		specs, err := parseMgrSpecs([]string{a})
		if err != nil {
			return nil, err
		}
		s := specs[0]
		if s.op == "" {
			return nil, fmt.Errorf("Invalid input: %s (want Key=Value)", a)
		}
		key, ok := matchKey(s.key, resvKeys)
		if !ok {
			if name, ok := matchKey(s.key, resvUnsupported); ok {
				return nil, fmt.Errorf("%s is not supported by Stockade", name)
			}
			return nil, fmt.Errorf("Unknown parameter: %s", s.key)
		}
		isList := key == "Users" || key == "Accounts" || key == "Flags"
		if s.op != "=" && !isList {
			return nil, fmt.Errorf("Invalid input: %s (%s takes '=')", a, key)
		}
		v := s.val
		switch key {
		case "ReservationName":
			if v == "" {
				return nil, fmt.Errorf("Invalid ReservationName value: empty")
			}
			r.name = v
		case "StartTime", "EndTime":
			t, err := sbatch.ParseDate(v, now, loc, sbatch.DateAsIs)
			if err != nil {
				return nil, fmt.Errorf("Invalid %s value: %s", key, v)
			}
			if key == "StartTime" {
				r.start = &t
			} else {
				r.end = &t
			}
		case "Duration":
			if strings.EqualFold(v, "UNLIMITED") || strings.EqualFold(v, "INFINITE") || v == "-1" {
				return nil, fmt.Errorf("Duration=%s is not supported by Stockade: give a time", v)
			}
			sec, err := sbatch.ParseTime(v)
			if err != nil || sec <= 0 {
				return nil, fmt.Errorf("Invalid Duration value: %s", v)
			}
			r.duration = &sec
		case "Nodes":
			n := v
			r.nodes = &n
		case "NodeCnt", "NodeCount":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("Invalid NodeCnt value: %s", v)
			}
			r.nodeCnt = n
		case "PartitionName":
			p := v
			r.partition = &p
		case "Users", "Accounts", "Flags":
			names := listVal(v)
			if key == "Flags" {
				for i := range names {
					if names[i], err = resvFlag(names[i]); err != nil {
						return nil, err
					}
				}
			}
			switch key {
			case "Users":
				r.users = r.users.add(s.op, names)
			case "Accounts":
				r.accounts = r.accounts.add(s.op, names)
			default:
				r.flags = r.flags.add(s.op, names)
			}
		}
	}
	return r, nil
}

// resvList is a list setting of a spec and the reservation list it sets.
type resvList struct {
	set *listSet
	dst *[]string
}

// lists pairs the spec's Users, Accounts and Flags with res's.
func (r *resvSpec) lists(res *api.Reservation) []resvList {
	return []resvList{{r.users, &res.Users}, {r.accounts, &res.Accounts}, {r.flags, &res.Flags}}
}

// allNodes lists the cluster's nodes when Nodes=ALL needs them.
func (r *resvSpec) allNodes(ctx context.Context, c *api.Client) ([]api.Node, error) {
	if r.nodes == nil || !strings.EqualFold(*r.nodes, "ALL") {
		return nil, nil
	}
	nresp, err := c.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s", apiMessage(err))
	}
	return nresp.Nodes, nil
}

// resvNodes expands a Nodes= value; ALL is every node.
func resvNodes(v string, all []api.Node) ([]string, error) {
	if strings.EqualFold(v, "ALL") {
		out := make([]string, len(all))
		for i, n := range all {
			out[i] = n.Name
		}
		slices.SortFunc(out, compareHost)
		return out, nil
	}
	names, err := hostlist.Expand(v)
	if err != nil {
		return nil, fmt.Errorf("Invalid Nodes value: %v", err)
	}
	return names, nil
}

// buildCreate turns a create spec into a request, with Slurm's checks.
func buildCreate(r *resvSpec, nodes []api.Node) (*api.ReservationRequest, error) {
	const tail = " No reservation created."
	if r.start == nil {
		return nil, fmt.Errorf("A start time must be given." + tail)
	}
	if r.end == nil && r.duration == nil {
		return nil, fmt.Errorf("An end time or duration must be given." + tail)
	}
	if r.nodes == nil && r.nodeCnt == 0 {
		return nil, fmt.Errorf("Either Nodes or NodeCnt must be specified." + tail)
	}
	req := &api.ReservationRequest{Op: "create", NodeCount: r.nodeCnt}
	res := &req.Reservation
	res.Name = r.name
	res.Start = *r.start
	switch {
	case r.end != nil:
		res.End = *r.end
	default:
		res.End = res.Start.Add(time.Duration(*r.duration) * time.Second)
	}
	if !res.End.After(res.Start) {
		return nil, fmt.Errorf("Invalid EndTime value: the reservation must end after it starts." + tail)
	}
	for _, l := range r.lists(res) {
		if l.set != nil {
			if l.set.incremental() {
				return nil, fmt.Errorf("Invalid input: += and -= only update a reservation." + tail)
			}
			*l.dst = l.set.apply(nil)
		}
	}
	if len(res.Users) == 0 && len(res.Accounts) == 0 {
		return nil, fmt.Errorf("Either Users or Accounts must be specified." + tail)
	}
	if r.nodes != nil {
		names, err := resvNodes(*r.nodes, nodes)
		if err != nil {
			return nil, err
		}
		res.Nodes = names
		req.NodeCount = 0
	}
	if r.partition != nil {
		res.Partition = *r.partition
	}
	return req, nil
}

// buildUpdate applies an update spec to the stored reservation. A new
// start keeps the end unless a duration or end is given.
func buildUpdate(r *resvSpec, old api.Reservation, nodes []api.Node) (*api.ReservationRequest, error) {
	req := &api.ReservationRequest{Op: "update", Reservation: old}
	res := &req.Reservation
	res.Users, res.Accounts, res.Flags = slices.Clone(old.Users), slices.Clone(old.Accounts), slices.Clone(old.Flags)
	if r.start != nil {
		res.Start = *r.start
	}
	switch {
	case r.end != nil:
		res.End = *r.end
	case r.duration != nil:
		res.End = res.Start.Add(time.Duration(*r.duration) * time.Second)
	}
	if !res.End.After(res.Start) {
		return nil, fmt.Errorf("Invalid EndTime value: the reservation must end after it starts")
	}
	for _, l := range r.lists(res) {
		if l.set != nil {
			*l.dst = l.set.apply(*l.dst)
		}
	}
	if len(res.Users) == 0 && len(res.Accounts) == 0 {
		return nil, fmt.Errorf("Either Users or Accounts must be specified")
	}
	if r.partition != nil {
		res.Partition = *r.partition
	}
	switch {
	case r.nodes != nil:
		names, err := resvNodes(*r.nodes, nodes)
		if err != nil {
			return nil, err
		}
		res.Nodes = names
	case r.nodeCnt > 0:
		// The controllers choose the nodes again.
		res.Nodes = nil
		req.NodeCount = r.nodeCnt
	}
	return req, nil
}

// autoResvName is the name Slurm gives an unnamed reservation: its first
// user or account, "_" and the lowest free number.
func autoResvName(res *api.Reservation, existing []api.Reservation) string {
	base := "resv"
	switch {
	case len(res.Users) > 0:
		base = res.Users[0]
	case len(res.Accounts) > 0:
		base = res.Accounts[0]
	}
	for i := 1; ; i++ {
		name := base + "_" + strconv.Itoa(i)
		if !slices.ContainsFunc(existing, func(r api.Reservation) bool { return r.Name == name }) {
			return name
		}
	}
}

// showReservation is one reservation of scontrol show reservation.
func showReservation(c *fmtCtx, r *api.Reservation, nodes map[string]*api.Node) string {
	cpus := 0
	for _, n := range r.Nodes {
		if nd := nodes[n]; nd != nil {
			cpus += nd.CPUs
		}
	}
	state := "INACTIVE"
	if r.Active(c.now) {
		state = "ACTIVE"
	}
	dur := int64(r.End.Sub(r.Start) / time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "ReservationName=%s StartTime=%s EndTime=%s Duration=%s\n", r.Name,
		slurmDate(r.Start, c.loc, "Unknown"), slurmDate(r.End, c.loc, "Unknown"), slurmSecs(max(dur, 0)))
	fmt.Fprintf(&b, "   Nodes=%s NodeCnt=%d CoreCnt=%d Features=(null) PartitionName=%s Flags=%s\n",
		orNull(hostlist.Compress(r.Nodes)), len(r.Nodes), cpus, orNull(r.Partition), strings.Join(r.Flags, ","))
	fmt.Fprintf(&b, "   TRES=cpu=%d\n", cpus)
	fmt.Fprintf(&b, "   Users=%s Groups=(null) Accounts=%s Licenses=(null) State=%s BurstBuffer=(null) Watts=n/a\n",
		orNull(strings.Join(r.Users, ",")), orNull(strings.Join(r.Accounts, ",")), state)
	b.WriteString("   MaxStartDelay=(null)\n")
	return b.String()
}

// sortReservations orders reservations by start, then name.
func sortReservations(rs []api.Reservation) {
	slices.SortFunc(rs, func(a, b api.Reservation) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

func scontrolShowReservations(ctx context.Context, e *env, args []string, emit func([]string)) error {
	if len(args) > 1 {
		return fmt.Errorf("too many arguments for show reservation")
	}
	return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
		resp, err := c.Reservations(ctx)
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		nresp, err := c.Nodes(ctx)
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		byName := map[string]*api.Node{}
		for i := range nresp.Nodes {
			byName[nresp.Nodes[i].Name] = &nresp.Nodes[i]
		}
		rs := slices.Clone(resp.Reservations)
		sortReservations(rs)
		fc := &fmtCtx{now: e.now(), loc: e.loc}
		var recs []string
		for i := range rs {
			if len(args) == 0 || rs[i].Name == args[0] {
				recs = append(recs, showReservation(fc, &rs[i], byName))
			}
		}
		if len(recs) == 0 {
			if len(args) > 0 {
				return fmt.Errorf("Reservation %s not found", args[0])
			}
			fmt.Fprintln(e.stdout, "No reservations in the system")
			return nil
		}
		emit(recs)
		return nil
	})
}

// scontrolCreateReservation is "create reservation Key=Value...".
func scontrolCreateReservation(ctx context.Context, e *env, args []string) error {
	r, err := parseResvSpec(args, e.now(), e.loc)
	if err != nil {
		return err
	}
	return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
		nodes, err := r.allNodes(ctx, c)
		if err != nil {
			return err
		}
		req, err := buildCreate(r, nodes)
		if err != nil {
			return err
		}
		if req.Reservation.Name == "" {
			resp, err := c.Reservations(ctx)
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			req.Reservation.Name = autoResvName(&req.Reservation, resp.Reservations)
		}
		got, err := c.ChangeReservation(ctx, *req)
		if err != nil {
			return fmt.Errorf("Error creating the reservation: %s", apiMessage(err))
		}
		fmt.Fprintf(e.stdout, "Reservation created: %s\n", cmp.Or(got.Name, req.Reservation.Name))
		return nil
	})
}

// scontrolUpdateReservation is "update ReservationName=NAME Key=Value...".
func scontrolUpdateReservation(ctx context.Context, e *env, args []string) error {
	r, err := parseResvSpec(args, e.now(), e.loc)
	if err != nil {
		return err
	}
	if r.name == "" {
		return fmt.Errorf("ReservationName must be given. No reservation update.")
	}
	return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
		resp, err := c.Reservations(ctx)
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		i := slices.IndexFunc(resp.Reservations, func(x api.Reservation) bool { return x.Name == r.name })
		if i < 0 {
			return fmt.Errorf("Error updating the reservation: Requested reservation is invalid")
		}
		nodes, err := r.allNodes(ctx, c)
		if err != nil {
			return err
		}
		req, err := buildUpdate(r, resp.Reservations[i], nodes)
		if err != nil {
			return err
		}
		if _, err := c.ChangeReservation(ctx, *req); err != nil {
			return fmt.Errorf("Error updating the reservation: %s", apiMessage(err))
		}
		fmt.Fprintln(e.stdout, "Reservation updated.")
		return nil
	})
}

// scontrolDeleteReservation is "delete reservation NAME" or "delete
// ReservationName=NAME".
func scontrolDeleteReservation(ctx context.Context, e *env, name string) error {
	if name == "" {
		return fmt.Errorf("Reservation name must be given. No reservation deleted.")
	}
	return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
		req := api.ReservationRequest{Op: "delete", Reservation: api.Reservation{Name: name}}
		if _, err := c.ChangeReservation(ctx, req); err != nil {
			return fmt.Errorf("Error deleting the reservation: %s", apiMessage(err))
		}
		return nil
	})
}

// isReservation reports whether an entity word names reservations.
func isReservation(s string) bool {
	return matchName(s, "reservations", 3) || matchName(s, "reservationname", 3)
}
