package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

var scontrolCmd = &slurmCommand{
	name:         "scontrol",
	short:        "Show and change jobs, nodes, partitions and reservations",
	usage:        "scontrol [OPTIONS] COMMAND [ARGS]",
	helpShort:    "h",
	interspersed: true,
	long: `Commands:
  show job [ID]                 jobs as Key=Value records (all current jobs without ID)
  show node [NAME]              nodes (NAME may be a host list)
  show partition [NAME]         partitions
  show hostnames [LIST]         expand a host list, one name per line
                                (default $SLURM_JOB_NODELIST)
  show hostlist LIST            compress names into a host list
  show hostlistsorted LIST      the same, sorted
  show reservation [NAME]       reservations
  update NodeName=LIST State=DRAIN|DOWN|RESUME [Reason=TEXT]
                                drain, down or resume nodes (admins; a reason
                                is required to drain or down)
  create reservation [ReservationName=NAME] StartTime=TIME
         Duration=TIME|EndTime=TIME Users=LIST|Accounts=LIST
         Nodes=LIST|NodeCnt=N [PartitionName=P] [Flags=MAINT,...]
                                reserve nodes (admins); TIME as sacct -S takes
                                it (now, now+1hour, 2026-01-01T10:00:00),
                                Duration in minutes, H:M:S or D-H:M:S
  update ReservationName=NAME Key=Value...
                                change a reservation (Users+=, Users-= and the
                                like for Users, Accounts and Flags)
  delete reservation NAME       delete a reservation (also
                                delete ReservationName=NAME)
  hold ID...                    hold pending jobs (admin hold for admins)
  uhold ID...                   hold pending jobs as a user hold
  release ID...                 release held jobs
  requeue ID...                 requeue running or finished jobs
  version                       print the Slurm version followed
Keys of update are case-insensitive; IDs are 123, 123_4 or 123_[1-3].`,
	setup: setupScontrol,
}

func setupScontrol(fs *pflag.FlagSet) runFunc {
	oneline := fs.BoolP("oneliner", "o", false, "print each record on one line")
	fs.BoolP("details", "d", false, "accepted for compatibility")
	fs.BoolP("all", "a", false, "accepted for compatibility (every partition is shown)")
	fs.BoolP("quiet", "Q", false, "accepted for compatibility (successful updates print nothing)")
	fs.CountP("verbose", "v", "accepted for compatibility")
	return func(ctx context.Context, e *env, args []string) error {
		if len(args) == 0 {
			return fmt.Errorf("no command given (try \"scontrol --help\")")
		}
		cmd, rest := strings.ToLower(args[0]), args[1:]
		switch cmd {
		case "show":
			if len(rest) == 0 {
				return fmt.Errorf("show what? (job, node, partition, reservation, hostnames, hostlist)")
			}
			return scontrolShow(ctx, e, strings.ToLower(rest[0]), rest[1:], *oneline)
		case "update":
			if slices.ContainsFunc(rest, func(a string) bool { k, _, _ := strings.Cut(a, "="); return isReservation(k) }) {
				return scontrolUpdateReservation(ctx, e, rest)
			}
			return scontrolUpdate(ctx, e, rest)
		case "create":
			if len(rest) == 0 || !isReservation(rest[0]) {
				return fmt.Errorf("create: only reservations can be created (create reservation ...)")
			}
			return scontrolCreateReservation(ctx, e, rest[1:])
		case "delete":
			switch {
			case len(rest) == 2 && isReservation(rest[0]):
				return scontrolDeleteReservation(ctx, e, rest[1])
			case len(rest) == 1:
				if k, v, ok := strings.Cut(rest[0], "="); ok && isReservation(k) {
					return scontrolDeleteReservation(ctx, e, v)
				}
			}
			return fmt.Errorf("delete: only reservations can be deleted (delete reservation NAME)")
		case "hold", "uhold", "release", "requeue":
			return scontrolJobAction(ctx, e, cmd, rest)
		case "version":
			fmt.Fprintf(e.stdout, "slurm %s\n", slurmCompatVersion)
			return nil
		}
		return fmt.Errorf("invalid command: %s", args[0])
	}
}

// minJobAge is how long scontrol show job lists finished jobs, as
// Slurm's MinJobAge default keeps them in the controller.
const minJobAge = 300 * time.Second

func scontrolShow(ctx context.Context, e *env, what string, args []string, oneline bool) error {
	emit := func(recs []string) {
		for _, r := range recs {
			if oneline {
				fmt.Fprint(e.stdout, oneLiner(r))
			} else {
				fmt.Fprint(e.stdout, r+"\n")
			}
		}
	}
	switch what {
	case "hostnames":
		list := strings.Join(args, ",")
		if list == "" {
			list = e.getenv("SLURM_JOB_NODELIST")
		}
		if list == "" {
			return fmt.Errorf("host list is empty")
		}
		names, err := hostlist.Expand(list)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(e.stdout, n)
		}
		return nil
	case "hostlist", "hostlistsorted":
		names, err := hostlist.Expand(strings.Join(args, ","))
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return fmt.Errorf("host list is empty")
		}
		// Both print the sorted form: Compress sorts, where Slurm's
		// "hostlist" keeps the given order (the same text for sorted input).
		fmt.Fprintln(e.stdout, hostlist.Compress(names))
		return nil
	case "job", "jobs", "jobid":
		if len(args) > 1 {
			return fmt.Errorf("too many arguments for show job")
		}
		return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
			var sel *jobSel
			q := api.JobQuery{All: true}
			if len(args) == 1 {
				s, err := parseJobSel(args[0])
				if err != nil {
					return err
				}
				sel = &s
				q.IDs = queryIDs([]jobSel{s})
			}
			resp, err := c.Jobs(ctx, q)
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			now := e.now()
			var jobs []api.Job
			for _, j := range resp.Jobs {
				switch {
				case sel != nil:
					if sel.matches(&j) {
						jobs = append(jobs, j)
					}
				case !j.State.Terminal() || now.Sub(j.EndTime) < minJobAge:
					jobs = append(jobs, j)
				}
			}
			if len(jobs) == 0 {
				if sel != nil {
					fmt.Fprintln(e.stderr, "slurm_load_jobs error: Invalid job id specified")
					return errReported
				}
				fmt.Fprintln(e.stdout, "No jobs in the system")
				return nil
			}
			sortAcct(jobs)
			fc := &fmtCtx{now: now, loc: e.loc, groupName: e.groupName}
			recs := make([]string, len(jobs))
			for i := range jobs {
				recs[i] = showJob(fc, &jobs[i])
			}
			emit(recs)
			return nil
		})
	case "node", "nodes", "nodename":
		return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
			resp, err := c.Nodes(ctx)
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			var want map[string]bool
			if len(args) > 0 {
				names, err := hostlist.Expand(strings.Join(args, ","))
				if err != nil {
					return err
				}
				want = map[string]bool{}
				for _, n := range names {
					want[n] = true
				}
			}
			nodes := slices.Clone(resp.Nodes)
			slices.SortFunc(nodes, func(a, b api.Node) int { return compareHost(a.Name, b.Name) })
			parts := nodePartitions(resp.Partitions)
			fc := &fmtCtx{now: e.now(), loc: e.loc}
			// Only for "+MAINT": without the reservations nodes show their
			// other states.
			var maint map[string]bool
			if resvs, err := c.Reservations(ctx); err == nil {
				maint = maintNodes(resvs.Reservations, fc.now)
			}
			var recs []string
			for i := range nodes {
				if want == nil || want[nodes[i].Name] {
					recs = append(recs, showNodeIn(fc, &nodes[i], parts[nodes[i].Name], maint))
				}
			}
			if len(recs) == 0 {
				if len(args) > 0 {
					return fmt.Errorf("Node %s not found", strings.Join(args, ","))
				}
				fmt.Fprintln(e.stdout, "No nodes in the system")
				return nil
			}
			emit(recs)
			return nil
		})
	case "reservation", "reservations", "res", "reservationname":
		return scontrolShowReservations(ctx, e, args, emit)
	case "partition", "partitions", "part", "partitionname":
		if len(args) > 1 {
			return fmt.Errorf("too many arguments for show partition")
		}
		return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
			resp, err := c.Nodes(ctx)
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			byName := map[string]*api.Node{}
			for i := range resp.Nodes {
				byName[resp.Nodes[i].Name] = &resp.Nodes[i]
			}
			var recs []string
			for i := range resp.Partitions {
				p := &resp.Partitions[i]
				if len(args) == 0 || p.Name == args[0] {
					recs = append(recs, showPartition(p, byName))
				}
			}
			if len(recs) == 0 {
				if len(args) > 0 {
					return fmt.Errorf("Partition %s not found", args[0])
				}
				fmt.Fprintln(e.stdout, "No partitions in the system")
				return nil
			}
			emit(recs)
			return nil
		})
	}
	return fmt.Errorf("invalid entity: %s for keyword: show", what)
}

// nodeUpdate is a parsed "update NodeName=... State=... Reason=...".
type nodeUpdate struct {
	nodes  []string
	state  string // drain | resume | down
	reason string
}

// parseNodeUpdate reads scontrol update's key=value pairs (keys are
// case-insensitive, as in Slurm).
func parseNodeUpdate(args []string) (nodeUpdate, error) {
	var u nodeUpdate
	var nodeList, state string
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return u, fmt.Errorf("invalid input: %s", a)
		}
		switch strings.ToLower(k) {
		case "nodename", "node":
			nodeList = v
		case "state":
			state = strings.ToUpper(v)
		case "reason":
			u.reason = v
		case "jobid", "job":
			return u, fmt.Errorf("updating jobs is not supported by Stockade: %s", a)
		case "partitionname":
			return u, fmt.Errorf("updating partitions is not supported by Stockade: %s", a)
		default:
			return u, fmt.Errorf("Update of this parameter is not supported: %s", a)
		}
	}
	if nodeList == "" {
		return u, fmt.Errorf("No valid entity in update command (NodeName= is required)")
	}
	names, err := hostlist.Expand(nodeList)
	if err != nil {
		return u, err
	}
	u.nodes = names
	switch state {
	case "DRAIN":
		u.state = "drain"
	case "DOWN":
		u.state = "down"
	case "RESUME", "UNDRAIN", "IDLE":
		u.state = "resume"
	case "":
		return u, fmt.Errorf("State= is required (DRAIN, DOWN or RESUME)")
	default:
		return u, fmt.Errorf("Invalid node state specified: %s", state)
	}
	if (u.state == "drain" || u.state == "down") && strings.TrimSpace(u.reason) == "" {
		return u, fmt.Errorf("You must specify a reason when DOWNING or DRAINING a node. Request denied")
	}
	return u, nil
}

func scontrolUpdate(ctx context.Context, e *env, args []string) error {
	u, err := parseNodeUpdate(args)
	if err != nil {
		return err
	}
	return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
		err := c.UpdateNodes(ctx, api.NodeUpdateRequest{Nodes: u.nodes, State: u.state, Reason: u.reason})
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		return nil
	})
}

func scontrolJobAction(ctx context.Context, e *env, action string, args []string) error {
	ids := splitLists(args)
	if len(ids) == 0 {
		return fmt.Errorf("%s: no job id given", action)
	}
	for _, id := range ids {
		if _, err := parseJobSel(id); err != nil {
			return err
		}
	}
	return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
		_, err := c.JobAction(ctx, api.JobActionRequest{Action: action, JobIDs: ids})
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		return nil
	})
}

// withClient runs f with a client and a bounded request context.
func withClient(ctx context.Context, e *env, f func(context.Context, *api.Client) error) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	rctx, cancel, err := e.requestContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return f(rctx, c)
}
