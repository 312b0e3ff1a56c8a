package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// TestMaintNodeState: nodes of an active MAINT reservation show as
// "maint" in sinfo when otherwise idle and get "+MAINT" in scontrol.
func TestMaintNodeState(t *testing.T) {
	resvs := []api.Reservation{
		{Name: "m", Users: []string{"root"}, Nodes: []string{"node1", "node4", "node5"}, Start: ago(time.Hour),
			End: ago(-time.Hour), Flags: []string{"MAINT", "IGNORE_JOBS"}},
		{Name: "plain", Users: []string{"alice"}, Nodes: []string{"node2"}, Start: ago(time.Hour), End: ago(-time.Hour)},
		{Name: "later", Users: []string{"root"}, Nodes: []string{"node3"}, Start: ago(-time.Hour), End: ago(-2 * time.Hour),
			Flags: []string{"maint"}},
	}
	maint := maintNodes(resvs, fixNow)
	if len(maint) != 3 || !maint["node1"] || !maint["node4"] || !maint["node5"] {
		t.Fatalf("maint nodes %v, want node1, node4, node5", maint)
	}
	nodes := map[string]*api.Node{}
	all := fixtureNodes()
	for i := range all {
		nodes[all[i].Name] = &all[i]
	}
	for _, tc := range []struct {
		node, compact, upper string
	}{
		{"node4", "maint", "IDLE+MAINT"},       // idle: maint
		{"node1", "mix", "MIXED+MAINT"},        // running jobs: its base state
		{"node5", "drain", "IDLE+DRAIN+MAINT"}, // drained wins
		{"node2", "mix", "MIXED"},              // not a MAINT reservation
		{"node3", "alloc", "ALLOCATED"},        // MAINT reservation not active yet
	} {
		s := nodeStateIn(nodes[tc.node], maint)
		if s.compact != tc.compact || s.upper != tc.upper {
			t.Errorf("%s: %s/%s, want %s/%s", tc.node, s.compact, s.upper, tc.compact, tc.upper)
		}
	}

	out, bad := renderSinfo(sinfoView{format: "%N %t", nodeOriented: true, loc: time.UTC, maint: maint},
		&sinfoFilter{}, all, fixturePartitions())
	if len(bad) > 0 || !strings.Contains(out, "node4 maint\n") || !strings.Contains(out, "node1 mix\n") {
		t.Errorf("sinfo -N:\n%s", out)
	}
	states, err := parseNodeStates([]string{"maint"})
	if err != nil {
		t.Fatal(err)
	}
	out, _ = renderSinfo(sinfoView{format: "%D %T %N", loc: time.UTC, maint: maint}, &sinfoFilter{states: states},
		all, fixturePartitions())
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || strings.Fields(lines[1])[1] != "maint" ||
		strings.Fields(lines[1])[2] != "node4" {
		t.Errorf("sinfo -t maint:\n%s", out)
	}

	fc := &fmtCtx{now: fixNow, loc: time.UTC}
	if got := showNodeIn(fc, nodes["node4"], nil, maint); !strings.Contains(got, "State=IDLE+MAINT ") {
		t.Errorf("scontrol show node:\n%s", got)
	}
	if got := showNode(fc, nodes["node4"], nil); !strings.Contains(got, "State=IDLE ") {
		t.Errorf("scontrol show node without reservations:\n%s", got)
	}
}

// TestShowReservationFlags: scontrol show reservation prints Flags=.
func TestShowReservationFlags(t *testing.T) {
	r := api.Reservation{Name: "m", Users: []string{"root"}, Nodes: []string{"node4"}, Start: ago(time.Hour),
		End: ago(-time.Hour), Flags: []string{"MAINT", "IGNORE_JOBS"}}
	got := showReservation(&fmtCtx{now: fixNow, loc: time.UTC}, &r, nil)
	if !strings.Contains(got, " Flags=MAINT,IGNORE_JOBS\n") || !strings.Contains(got, "State=ACTIVE") {
		t.Errorf("show reservation:\n%s", got)
	}
}
