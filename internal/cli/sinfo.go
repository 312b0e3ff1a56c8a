package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

var sinfoCmd = &slurmCommand{
	name:         "sinfo",
	short:        "View nodes and partitions",
	usage:        "sinfo [OPTIONS]",
	interspersed: true,
	long: `Shows one line per partition and node state (the default partition marked
with *): "` + sinfoDefaultFormat + `". -N shows one line per node and
partition, -s one line per partition with node counts (allocated/idle/other/
total), -R the reasons nodes are down or drained. Node states: idle, mix,
alloc, drain (drained), drng (draining), down, unk.

Format codes (-o): %a availability, %A nodes allocated/idle, %b/%f features,
%B max CPUs per node, %c CPUs, %C CPUs A/I/O/T, %d tmp disk, %D node count,
%E reason, %F nodes A/I/O/T, %g groups, %G GRES, %h oversubscribe,
%H reason time, %i reservation, %l time limit, %L default time, %m memory (MB),
%n hostnames, %N node list, %o node address, %p priority tier, %P partition
(* for the default), %r root only, %R partition name, %s job size,
%t state (compact), %T state, %u/%U reason user, %v agent version,
%w weight, %z sockets:cores:threads.

Stockade's own codes, on letters Slurm leaves free: %y trust (attested,
approved, none), %q time of the last verified quote, %K EK fingerprint,
%Q last attestation error.`,
	setup: setupSinfo,
}

func setupSinfo(fs *pflag.FlagSet) runFunc {
	fs.BoolP("all", "a", false, "accepted for compatibility (every partition is shown)")
	dead := fs.BoolP("dead", "d", false, "show only non-responding nodes")
	fs.BoolP("exact", "e", false, "accepted for compatibility (nodes are grouped by every shown attribute)")
	noHeader := fs.BoolP("noheader", "h", false, "do not print a header")
	iterate := fs.IntP("iterate", "i", 0, "repeat every `seconds` seconds")
	long := fs.BoolP("long", "l", false, "long format, after a date line")
	nodes := fs.StringP("nodes", "n", "", "show only these `nodes` (host list)")
	nodeOriented := fs.BoolP("Node", "N", false, "one line per node")
	format := fs.StringP("format", "o", "", "output `format` with % codes (see above; env SINFO_FORMAT)")
	partitions := fs.StringArrayP("partition", "p", nil, "show only these `partitions`")
	responding := fs.BoolP("responding", "r", false, "show only responding nodes")
	reasons := fs.BoolP("list-reasons", "R", false, "list the reasons nodes are down or drained")
	summarize := fs.BoolP("summarize", "s", false, "one line per partition: NODES(A/I/O/T)")
	states := fs.StringArrayP("states", "t", nil, "show only nodes in these `states`: idle,mix,alloc,drain,drng,down,unk,maint,all")
	asJSON := fs.Bool("json", false, "print nodes and partitions as JSON")
	fs.Bool("noconvert", false, "accepted for compatibility")
	fs.CountP("verbose", "v", "accepted for compatibility")

	return func(ctx context.Context, e *env, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unrecognized argument: %s", args[0])
		}
		f := &sinfoFilter{partitions: splitLists(*partitions), responding: *responding, dead: *dead}
		var err error
		if f.states, err = parseNodeStates(splitLists(*states)); err != nil {
			return err
		}
		if *nodes != "" {
			names, err := hostlist.Expand(*nodes)
			if err != nil {
				return fmt.Errorf("--nodes: %v", err)
			}
			f.nodes = map[string]bool{}
			for _, n := range names {
				f.nodes[n] = true
			}
		}
		v := sinfoView{nodeOriented: *nodeOriented, noHeader: *noHeader, loc: e.loc}
		v.format = *format
		if v.format == "" {
			switch {
			case *summarize:
				v.format = sinfoSummarizeFormat
			case *nodeOriented && *long:
				v.format = sinfoNodeLongFormat
			case *nodeOriented:
				v.format = sinfoNodeFormat
			case *reasons && *long:
				v.format = sinfoReasonsLongFormat
			case *reasons:
				v.format = sinfoReasonsFormat
			case e.getenv("SINFO_FORMAT") != "":
				v.format = e.getenv("SINFO_FORMAT")
			case *long:
				v.format = sinfoLongFormat
			default:
				v.format = sinfoDefaultFormat
			}
		}
		if *reasons && f.states == nil {
			// -R lists down and drained nodes unless -t says otherwise.
			f.states = map[string]bool{"down": true, "drain": true, "drng": true}
		}
		v.showEmpty = f.states == nil && f.nodes == nil && !*responding && !*dead && !*reasons
		if *iterate < 0 {
			return fmt.Errorf("invalid --iterate value: %d", *iterate)
		}

		client, err := e.client()
		if err != nil {
			return err
		}
		for {
			rctx, cancel, err := e.requestContext(ctx)
			if err != nil {
				return err
			}
			resp, err := client.Nodes(rctx)
			var resvs *api.ReservationsResponse
			if err == nil {
				// Only for the maint state: without it nodes show their
				// other states.
				resvs, _ = client.Reservations(rctx)
			}
			cancel()
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			v.maint = nil
			if resvs != nil {
				v.maint = maintNodes(resvs.Reservations, e.now())
			}
			if *asJSON {
				b, err := sinfoJSON(resp.Nodes, resp.Partitions)
				if err != nil {
					return err
				}
				e.stdout.Write(b)
			} else {
				if *long || *iterate > 0 {
					v.dateLine = e.now()
				}
				out, bad := renderSinfo(v, f, resp.Nodes, resp.Partitions)
				for _, msg := range bad {
					fmt.Fprintf(e.stderr, "sinfo: error: %s\n", msg)
				}
				fmt.Fprint(e.stdout, out)
			}
			if *iterate == 0 {
				return nil
			}
			fmt.Fprintln(e.stdout)
			if err := e.sleep(ctx, time.Duration(*iterate)*time.Second); err != nil {
				return nil
			}
		}
	}
}
