package server

// Fuzz tests for the controller's API decoders and parsers: every request
// body and query string is untrusted input. Each fuzzer runs a body through
// decodeJSON exactly as the handler does, then through the handler's
// validation up to (not including) its Raft Apply, against a state built
// with raftstore.Store.ApplyCommand (no Raft).
//
// The handlers read state through s.node (a live Raft member), so they
// cannot be called without Raft. Their checks are package functions that
// take a state snapshot and the request, and return the command the
// handler proposes (or the ids it acts on) or the error it answers:
// validateSubmit and retriedSubmit, cancelTargets, jobActionCommand,
// checkReport, checkRegister, checkHeartbeat, checkJoin and signJoin,
// nodeUpdateCommand, normalizeUserAdd and newUserIDs,
// checkControllerRecord, parseListQuery, parseWorkQuery (and under them
// decodeJSON, normalizeSpec, scheduler.ValidateSpec, selectOwned,
// parseJobRefs, parseStates, expandNodes, resolveIDs, writeError). The
// fuzzers call these, the code the handlers run; only the Argon2id match
// of a join token is left out.
//
// Properties checked, beyond "no panic":
//   - decode errors are *httpError 400/413, one line, and name the field
//     (type errors), the byte offset (syntax errors) or the unknown field,
//     as the reference encoding/json decoder reports them;
//   - a body that decodes re-encodes to a body that decodes to the same
//     value (and re-encodes to the same bytes);
//   - validation errors are 4xx httpErrors whose message starts with the
//     JSON field (or CLI flag) at fault, and writeError renders every error
//     as one JSON line {"error": ...};
//   - rejected requests leave the store untouched (index, next job id);
//   - what the API accepts, the state machine accepts too (the command
//     the handler would propose applies to a copy of the state without an
//     error result), and accepted submits satisfy the spec invariants the
//     scheduler relies on (CPUs and memory per node fit a node);
//   - job id selectors and dependency lists re-parse from their canonical
//     form to the same value, and resolve only to the jobs they name;
//   - postLeader (the real one, against an httptest TLS leader) publishes
//     any controller record unchanged.
//
// Run one with: go test ./internal/server -run '^$' -fuzz '^FuzzDecodeSubmit$' -fuzztime 20s

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/internal/sbatch"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

// ---------------------------------------------------------------------------
// State

// fzEpoch is the (fixed) proposer time of every command the fuzzers apply.
var fzEpoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var (
	fzAlice = &api.User{Name: "alice", UID: 1000, GID: 1000, DefaultAccount: "physics", Accounts: []string{"physics"}}
	fzBob   = &api.User{Name: "bob", UID: 1001, GID: 1001, DefaultAccount: "physics", Accounts: []string{"physics"}}
	fzRoot  = &api.User{Name: "root", Admin: true, DefaultAccount: "root", Accounts: []string{"root"}}
)

// fzNode is the agent the agent-route fuzzers call as (its certificate's
// CN); fzController the controller the controller-route fuzzer calls as.
const (
	fzNode       = "node1"
	fzController = "c1"
)

func fzApply(tb testing.TB, st *raftstore.Store, cmd *raftstore.Command) any {
	tb.Helper()
	cmd.Time = fzEpoch.UnixNano()
	res := st.ApplyCommand(st.Index()+1, cmd)
	if err, ok := res.(error); ok {
		tb.Fatalf("building the fuzz state: command %d: %v", cmd.Type, err)
	}
	return res
}

// newFuzzStore builds the state the fuzzers validate against:
//
//	partitions batch (node1,node2; default; max 1 day) and small (node1;
//	max 10 min); node1 UP with 8 CPUs, 16 GiB, 2 GPUs, features avx2,ib;
//	node2 configured but never registered; accounts root and physics;
//	users root (admin), alice and bob;
//	job 1 alice RUNNING on node1 (submit id retry-1, requeue)
//	job 2 bob PENDING held by admin
//	jobs 3-5 alice array 3_[0-2] PENDING
//	job 6 alice PENDING held by admin
//	job 7 alice CANCELLED
func newFuzzStore(tb testing.TB) *raftstore.Store {
	tb.Helper()
	st := raftstore.NewStore()
	fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdSetPartitions,
		Partitions: []api.Partition{
			{Name: "batch", Nodes: []string{"node1", "node2"}, Default: true, Up: true, MaxTimeSec: 86400, DefaultTimeSec: 3600, DefMemPerCPUMB: 64},
			{Name: "small", Nodes: []string{"node1"}, Up: true, MaxTimeSec: 600},
		},
		ConfiguredNodes: []api.Node{{Name: "node1"}, {Name: "node2"}},
	})
	fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdRegisterNode, Register: &api.AgentRegisterRequest{
		Name: "node1", CPUs: 8, MemoryMB: 16384, GPUs: 2, Features: []string{"avx2", "ib"}, AgentVersion: "test", Arch: "amd64", OS: "linux"}})
	fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdAddAccount, Account: &api.Account{Name: "root"}})
	fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdAddAccount, Account: &api.Account{Name: "physics", Parent: "root"}})
	for _, u := range []*api.User{fzRoot, fzAlice, fzBob} {
		c := *u
		fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdAddUser, User: &c, UserTokenHash: "x"})
	}
	submit := func(u *api.User, spec api.JobSpec) uint64 {
		spec.Script, spec.WorkDir, spec.Partition = "#!/bin/sh\ntrue\n", "/home/"+u.Name, "batch"
		spec.Nodes, spec.Tasks, spec.CPUsPerTask = 1, 1, 1
		res := fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdSubmitJob,
			Submit: &raftstore.SubmitJob{Spec: spec, User: u.Name, UID: u.UID, GID: u.GID}})
		return res.(*raftstore.SubmitResult).JobID
	}
	submit(fzAlice, api.JobSpec{Name: "run", SubmitID: "retry-1", Requeue: true})       // 1
	submit(fzBob, api.JobSpec{Name: "bobs"})                                            // 2
	submit(fzAlice, api.JobSpec{Name: "arr", Array: "0-2", ArrayTasks: []int{0, 1, 2}}) // 3-5
	submit(fzAlice, api.JobSpec{Name: "held"})                                          // 6
	submit(fzAlice, api.JobSpec{Name: "gone"})                                          // 7
	fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdApplyPlan, Plan: &scheduler.Plan{
		Placements: []scheduler.Placement{{JobID: 1, Nodes: []string{"node1"}, CPUs: 1, MemoryMB: 64}}}})
	fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdHoldJobs, JobIDs: []uint64{2, 6}, HeldBy: "admin"})
	fzApply(tb, st, &raftstore.Command{Type: raftstore.CmdCancelJobs, JobIDs: []uint64{7}})
	if j := st.Snapshot().Job(1); j == nil || j.State != api.JobRunning {
		tb.Fatalf("fuzz state: job 1 is not running: %+v", j)
	}
	return st
}

// fzStoreState is what a rejected request must not change.
type fzStoreState struct{ index, nextJobID uint64 }

func fzStateOf(st *raftstore.Store) fzStoreState {
	return fzStoreState{st.Index(), st.Snapshot().NextJobID()}
}

func fzUnchanged(t *testing.T, st *raftstore.Store, before fzStoreState) {
	t.Helper()
	if after := fzStateOf(st); after != before {
		t.Fatalf("a rejected request changed the store: %+v -> %+v", before, after)
	}
}

// fzApplyAccepted applies the command a handler would propose for an
// accepted request to a fresh copy of the state: the state machine must not
// refuse what the API accepted.
func fzApplyAccepted(t *testing.T, cmd *raftstore.Command) (*raftstore.Store, any) {
	t.Helper()
	st := newFuzzStore(t)
	before := st.Index()
	cmd.Time = fzEpoch.UnixNano()
	res := st.ApplyCommand(before+1, cmd)
	if err, ok := res.(error); ok {
		t.Fatalf("the API accepted a request the state machine refuses: %v\ncommand: %s", err, fzJSON(cmd))
	}
	if st.Index() != before+1 {
		t.Fatalf("store index %d after applying at %d", st.Index(), before+1)
	}
	return st, res
}

func fzJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	if len(b) > 2000 {
		b = append(b[:2000], "..."...)
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// Decoding

// fzServer is enough of a Server for writeError.
var fzServer = &Server{log: slog.New(slog.DiscardHandler)}

func fzDecode(body []byte, v any) error {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/fuzz", bytes.NewReader(body))
	return decodeJSON(w, r, v)
}

// fzDecodeChecked decodes body into a T as the handlers do and checks the
// decoder's properties; ok is false if the body was rejected.
func fzDecodeChecked[T any](t *testing.T, body []byte) (v T, ok bool) {
	t.Helper()
	if err := fzDecode(body, &v); err != nil {
		fzCheckDecodeError[T](t, body, err)
		return v, false
	}
	fzCheckRoundTrip(t, &v)
	return v, true
}

// fzCheckDecodeError compares a decodeJSON error with what encoding/json
// itself reports for the body: the field, offset or unknown field it names
// must survive into the one-line message.
func fzCheckDecodeError[T any](t *testing.T, body []byte, err error) {
	t.Helper()
	msg := err.Error()
	var he *httpError
	if !errors.As(err, &he) {
		t.Fatalf("decode error %T %q is not an httpError (it would answer 503, asking the client to retry)", err, msg)
	}
	if he.status != http.StatusBadRequest && he.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("decode error %q has status %d", msg, he.status)
	}
	if msg == "" || strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("decode error is not one non-empty line: %q", msg)
	}
	var ref T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	refErr := dec.Decode(&ref)
	var (
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case refErr == nil:
		if msg != "json: unexpected data after the request object" {
			t.Fatalf("body %q: first value decodes, but the error is %q", body, msg)
		}
	case errors.As(refErr, &se):
		if want := fmt.Sprintf("json: syntax error at byte %d: ", se.Offset); !strings.HasPrefix(msg, want) {
			t.Fatalf("syntax error %q does not give the offset: want prefix %q", msg, want)
		}
	case errors.As(refErr, &ute) && ute.Field != "":
		if want := ute.Field + ": expected "; !strings.HasPrefix(msg, want) {
			t.Fatalf("type error %q does not name the field: want prefix %q (decoder: %v)", msg, want, refErr)
		}
	case errors.As(refErr, &ute):
		if want := "json: request body must be a JSON object, not "; !strings.HasPrefix(msg, want) {
			t.Fatalf("top-level type error %q: want prefix %q", msg, want)
		}
	case errors.Is(refErr, io.EOF):
		if msg != "json: request body is empty" {
			t.Fatalf("empty body: error %q", msg)
		}
	case errors.Is(refErr, io.ErrUnexpectedEOF):
		if msg != "json: request body ends early" {
			t.Fatalf("truncated body: error %q", msg)
		}
	case strings.HasPrefix(refErr.Error(), "json: unknown field "):
		if msg != refErr.Error() {
			t.Fatalf("unknown field error %q, decoder said %q", msg, refErr)
		}
	default:
		// Errors that carry neither field nor body offset (base64 data in
		// a []byte field): passed on as the decoder words them.
		if msg != oneLine(refErr).Error() {
			t.Fatalf("decode error %q, decoder said %q", msg, refErr)
		}
	}
	fzCheckWire(t, err, he.status)
}

// fzCheckRoundTrip re-encodes a decoded request: the encoding must decode
// (through decodeJSON) to the same value and re-encode to the same bytes.
func fzCheckRoundTrip[T any](t *testing.T, v *T) {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("decoded value does not re-encode: %v", err)
	}
	var v2 T
	if err := fzDecode(enc, &v2); err != nil {
		t.Fatalf("re-encoded body %s is rejected: %v", enc, err)
	}
	if !fzSame(reflect.ValueOf(v).Elem(), reflect.ValueOf(&v2).Elem()) {
		t.Fatalf("round trip changed the value:\n  decoded   %#v\n  re-decoded %#v\n  via %s", *v, v2, enc)
	}
	enc2, err := json.Marshal(&v2)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("re-encoding is not stable:\n  %s\n  %s (%v)", enc, enc2, err)
	}
}

// fzSame is reflect.DeepEqual except that nil and empty slices and maps are
// equal (encoding/json's omitempty drops empty ones).
func fzSame(a, b reflect.Value) bool {
	if a.Kind() != b.Kind() || a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !fzSame(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !fzSame(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return fzSame(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !fzSame(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	}
	panic("fzSame: unhandled kind " + a.Kind().String())
}

// fzCheckWire renders err as the handlers do (writeError) and checks the
// response: the status, and one line of JSON {"error": one line}.
func fzCheckWire(t *testing.T, err error, status int) {
	t.Helper()
	w := httptest.NewRecorder()
	fzServer.writeError(w, httptest.NewRequest(http.MethodPost, "/v1/fuzz", nil), err)
	if w.Code != status {
		t.Fatalf("error %q answered %d, want %d", err, w.Code, status)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error response Content-Type %q", ct)
	}
	body := w.Body.String()
	if !strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 {
		t.Fatalf("error response is not one line: %q", body)
	}
	var e api.Error
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error response %q is not {\"error\": ...}: %v", body, err)
	}
	// The JSON encoder replaces invalid UTF-8 (echoed user input) byte by
	// byte, as a string-to-rune conversion does.
	if e.Error == "" || strings.ContainsAny(e.Error, "\r\n") || e.Error != string([]rune(oneLine(err).Error())) {
		t.Fatalf("error response message %q for error %q", e.Error, err)
	}
}

// fzCheckRejected checks a validation error: a 4xx httpError whose message
// starts with the field at fault (fieldRE), rendered on one line.
func fzCheckRejected(t *testing.T, err error, fieldRE *regexp.Regexp) {
	t.Helper()
	var he *httpError
	if !errors.As(err, &he) {
		t.Fatalf("validation error %T %q is not an httpError (it would answer 503, asking the client to retry)", err, err)
	}
	if he.status < 400 || he.status > 499 {
		t.Fatalf("validation error %q has status %d", err, he.status)
	}
	if !fieldRE.MatchString(he.msg) {
		t.Fatalf("validation error %q does not start with the field at fault (%s)", he.msg, fieldRE)
	}
	fzCheckWire(t, err, he.status)
}

// ---------------------------------------------------------------------------
// POST /v1/jobs

var submitErrRE = regexp.MustCompile(`^(job\.[a-z_]+|--[a-z-]+): `)

const fzScript = `#!/bin/bash\n#SBATCH -J demo\nsrun hostname\n`

var submitSeeds = []string{
	// Valid: what sbatch sends.
	`{"job":{"name":"demo","script":"` + fzScript + `","current_working_directory":"/home/alice","environment":{"PATH":"/usr/bin","HOME":"/home/alice"},"nodes":1,"tasks":1,"cpus_per_task":1,"requeue":false}}`,
	`{"job":{"name":"mpi","partition":"batch","account":"physics","qos":"normal","script":"#!/bin/sh\nmpirun ./a.out\n","argv":["--x","1"],"current_working_directory":"/scratch/alice","nodes":1,"tasks":8,"tasks_per_node":8,"cpus_per_task":1,"memory_per_node":4096,"gpus_per_node":2,"time_limit_sec":3600,"standard_output":"/scratch/alice/%j.out","standard_error":"/scratch/alice/%j.err","open_mode":"append","requeue":true,"constraints":["avx2"],"exclusive":true,"comment":"c","mail_type":"END","mail_user":"alice@example.org","nice":10,"submit_id":"0b5e-77"}}`,
	`{"job":{"name":"arr","script":"#!/bin/sh\necho $SLURM_ARRAY_TASK_ID\n","current_working_directory":"/tmp","nodes":0,"tasks":0,"cpus_per_task":0,"array":"0-15:3%2","requeue":false}}`,
	`{"job":{"name":"dep","script":"#!/bin/sh\n","current_working_directory":"/tmp","nodes":1,"tasks":1,"cpus_per_task":2,"memory_per_cpu":128,"dependency":"afterok:1:3_1,afterany:2,singleton","required_nodes":["node[1]"],"exclude_nodes":["node2"],"requeue":false}}`,
	`{"job":{"name":"small","partition":"small","script":"#!/bin/sh\n","current_working_directory":"/","nodes":1,"tasks":1,"cpus_per_task":1,"time_limit_sec":60,"hold":true,"requeue":false},"test_only":true}`,
	`{"job":{"name":"explicit","script":"#!/bin/sh\n","current_working_directory":"/x","nodes":1,"tasks":1,"cpus_per_task":1,"array_tasks":[5,1,5],"array_max_running":1,"dependencies":[{"type":"afterok","job_id":3,"array_task":2}],"requeue":false}}`,
	`{"job":{"name":"retry","script":"#!/bin/sh\n","current_working_directory":"/x","nodes":1,"tasks":1,"cpus_per_task":1,"submit_id":"retry-1","requeue":false}}`,
	// Invalid.
	``,
	`null`,
	`[]`,
	`"job"`,
	`{"job":`,
	`{"job":{}}`,
	`{"job":{"script":"echo hi","current_working_directory":"/tmp"}}`,
	`{"job":{"script":"#!/bin/sh\n\u0000","current_working_directory":"/tmp"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"relative"}}`,
	`{"job":{"name":"a\u0007b","script":"#!/bin/sh\n","current_working_directory":"/tmp"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","nodes":"2"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","nodes":-1}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","nodes":3}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","tasks":1,"nodes":2}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","cpus_per_task":9}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","time_limit_sec":999999}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","memory_per_node":1,"memory_per_cpu":1}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","nice":-5}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","open_mode":"overwrite"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","environment":{"A=B":"c"}}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","qos":"high"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","array":"0-1001"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","array_tasks":[-1]}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","dependency":"afterok:99"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","dependency":"afterok:1+5"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","dependency":"before:1"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","dependencies":[{"type":"after","job_id":1,"array_task":-2}]}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","required_nodes":["node[1-"]}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","required_nodes":["bad/name"]}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","required_nodes":["node1"],"exclude_nodes":["node1"]}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","partition":"gpu"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","account":"chemistry"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","account":"root"}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","constraints":["fpga"]}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","gpus_per_node":3}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","nodes":1e3}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","nodes":99999999999999999999}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","priority":5}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp"}} {"job":{}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp"}}]`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp"},"test_only":"yes"}`,
	`{"job":{"script":"#!/bin/sh\n" "current_working_directory":"/tmp"}}`,
	`{"job":{"script":"#!/bin/sh\n","environment":{"K":1}}}`,
	`{"job":{"script":"#!/bin/sh\n","dependencies":[{"type":"afterok","job_id":-1}]}}`,
	// Overflowing CPUs or memory per node, once accepted (CPUsPerNode 0,
	// negative, and negative memory).
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","tasks_per_node":4611686018427387904,"cpus_per_task":4}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","tasks":9223372036854775807,"nodes":2}}`,
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","memory_per_cpu":4611686018427387904,"cpus_per_task":2}}`,
	// Many large host lists, once seconds of CPU each.
	`{"job":{"script":"#!/bin/sh\n","current_working_directory":"/tmp","exclude_nodes":["a[0-65535]","b[0-65535]"]}}`,
}

func FuzzDecodeSubmit(f *testing.F) {
	for i, s := range submitSeeds {
		f.Add([]byte(s), i%5 == 4)
	}
	base := newFuzzStore(f)
	f.Fuzz(func(t *testing.T, body []byte, admin bool) {
		u := fzAlice
		if admin {
			u = fzRoot
		}
		before := fzStateOf(base)
		defer fzUnchanged(t, base, before) // only the copies below are written
		req, ok := fzDecodeChecked[api.SubmitRequest](t, body)
		if !ok {
			return
		}
		snap := base.Snapshot()
		spec := req.Spec
		if err := validateSubmit(snap, u, &spec); err != nil {
			fzCheckRejected(t, err, submitErrRE)
			return
		}
		fzCheckAcceptedSpec(t, snap, u, &spec)
		if req.TestOnly {
			resp := testOnly(snap, u, &spec, fzEpoch)
			if resp.JobID != snap.NextJobID() || resp.EstimateNote == "" {
				t.Fatalf("test-only answer %+v (next job id %d)", resp, snap.NextJobID())
			}
			return
		}
		if resp, err := retriedSubmit(snap, u, &spec); err != nil {
			fzCheckRejected(t, err, submitErrRE)
			return
		} else if resp != nil {
			if resp.JobID == 0 {
				t.Fatalf("retried submission answered %+v", *resp)
			}
			return
		}
		st, res := fzApplyAccepted(t, &raftstore.Command{Type: raftstore.CmdSubmitJob,
			Submit: &raftstore.SubmitJob{Spec: spec, User: u.Name, UID: u.UID, GID: u.GID}})
		sr, ok := res.(*raftstore.SubmitResult)
		if !ok || sr.Duplicate {
			t.Fatalf("submit applied as %#v", res)
		}
		after := st.Snapshot()
		if j := after.Job(sr.JobID); j == nil || j.State != api.JobPending || j.User != u.Name {
			t.Fatalf("submitted job %d is %+v", sr.JobID, j)
		}
		tasks := slices.Compact(slices.Sorted(slices.Values(spec.ArrayTasks)))
		if len(sr.TaskIDs) != len(tasks) {
			t.Fatalf("%d array tasks (%v) became %d jobs", len(tasks), spec.ArrayTasks, len(sr.TaskIDs))
		}
	})
}

// fzCheckAcceptedSpec checks what an accepted, normalized spec promises
// the scheduler and the agents.
func fzCheckAcceptedSpec(t *testing.T, snap *raftstore.Snapshot, u *api.User, spec *api.JobSpec) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted spec %s: %s", fzJSON(spec), fmt.Sprintf(format, args...))
	}
	switch {
	case spec.Name == "" || len(spec.Name) > maxName || spec.Name != strings.TrimSpace(spec.Name) ||
		strings.IndexFunc(spec.Name, unicode.IsControl) >= 0:
		fail("bad name")
	case !strings.HasPrefix(spec.Script, "#!") || strings.IndexByte(spec.Script, 0) >= 0 || len(spec.Script) > maxScript:
		fail("bad script")
	case !filepath.IsAbs(spec.WorkDir):
		fail("relative working directory")
	case spec.Nodes < 1 || spec.CPUsPerTask < 1 || spec.Tasks < spec.Nodes || spec.TasksPerNode < 0:
		fail("bad counts")
	case spec.MemoryPerNodeMB < 0 || spec.MemoryPerCPUMB < 0 || spec.GPUsPerNode < 0 || spec.TimeLimitSec < 0:
		fail("negative size")
	case spec.Nice < 0 && !u.Admin:
		fail("negative nice from a user")
	}
	pt := snap.Partition(spec.Partition)
	if pt == nil {
		fail("no partition %q", spec.Partition)
	}
	if pt.MaxTimeSec > 0 && spec.TimeLimitSec > pt.MaxTimeSec {
		fail("time limit above MaxTime")
	}
	if spec.Account == "" || snap.Account(spec.Account) == nil {
		fail("no account %q", spec.Account)
	}
	for _, tid := range spec.ArrayTasks {
		if tid < 0 || tid > sbatch.MaxArrayTaskID {
			fail("array task %d", tid)
		}
	}
	for _, d := range spec.Dependencies {
		if d.ArrayTask < -1 || (d.Type != scheduler.DepSingleton && d.JobID == 0) {
			fail("dependency %+v", d)
		}
	}
	for _, n := range append(slices.Clone(spec.NodeList), spec.ExcludeNodes...) {
		if !nodeNameRE().MatchString(n) {
			fail("node name %q", n)
		}
	}
	// The registered nodes of the partition: an accepted job fits one.
	var maxCPUs, maxGPUs int
	var maxMem int64
	registered := false
	for _, name := range pt.Nodes {
		if n := snap.Node(name); n != nil && n.CPUs > 0 {
			registered = true
			maxCPUs, maxMem, maxGPUs = max(maxCPUs, n.CPUs), max(maxMem, n.MemoryMB), max(maxGPUs, n.GPUs)
		}
	}
	if !registered {
		return
	}
	cpus := spec.CPUsPerNode()
	if cpus < 1 || cpus > maxCPUs {
		fail("needs %d CPUs per node (nodes have at most %d)", cpus, maxCPUs)
	}
	mem := spec.MemoryMBPerNode()
	if mem == 0 {
		mem = pt.DefMemPerCPUMB * int64(cpus)
	}
	if mem < 0 || mem > maxMem {
		fail("needs %dM per node (nodes have at most %dM)", mem, maxMem)
	}
	if spec.GPUsPerNode > maxGPUs {
		fail("needs %d GPUs per node", spec.GPUsPerNode)
	}
}

// ---------------------------------------------------------------------------
// POST /v1/jobs/cancel

var cancelErrRE = regexp.MustCompile(`^((signal|job_ids|user|state): |job \S+: )`)

var cancelSeeds = []string{
	`{"job_ids":["1"]}`,
	`{"job_ids":["3_[0-1]","6"],"signal":"SIGTERM"}`,
	`{"job_ids":["3_2,7"],"signal":"kill"}`,
	`{"user":"alice","state":"PENDING,R"}`,
	`{"user":"alice","name":"arr,held","signal":"9"}`,
	`{"state":"all"}`,
	`{"job_ids":["2"]}`,
	`{"user":"bob"}`,
	`{"job_ids":["99"]}`,
	`{"job_ids":["0"]}`,
	`{"job_ids":["1_"]}`,
	`{"job_ids":["3_[1-"]}`,
	`{"job_ids":["abc"]}`,
	`{"job_ids":"1"}`,
	`{"job_ids":[1]}`,
	`{"signal":"HUP","job_ids":["1"]}`,
	`{"state":"RUNNING,BOGUS"}`,
	`{}`,
	`{"jobids":["1"]}`,
	`{"job_ids":["1"],}`,
	``,
}

func FuzzDecodeCancel(f *testing.F) {
	for i, s := range cancelSeeds {
		f.Add([]byte(s), i%4 == 3)
	}
	base := newFuzzStore(f)
	f.Fuzz(func(t *testing.T, body []byte, admin bool) {
		c := &caller{user: fzAlice}
		if admin {
			c.user = fzRoot
		}
		defer fzUnchanged(t, base, fzStateOf(base))
		req, ok := fzDecodeChecked[api.CancelRequest](t, body)
		if !ok {
			return
		}
		snap := base.Snapshot()
		ids, err := cancelTargets(snap, c, &req, fzEpoch)
		if err != nil {
			fzCheckRejected(t, err, cancelErrRE)
			return
		}
		for _, id := range ids {
			j := snap.Job(id)
			if j == nil || j.State.Terminal() || (!admin && j.User != c.user.Name) {
				t.Fatalf("cancel %s selects job %d: %+v", body, id, j)
			}
		}
		if len(ids) == 0 {
			return // handleCancel answers without a command
		}
		_, res := fzApplyAccepted(t, &raftstore.Command{Type: raftstore.CmdCancelJobs, JobIDs: ids})
		changed, ok := res.([]uint64)
		if !ok {
			t.Fatalf("cancel applied as %#v", res)
		}
		for _, id := range changed {
			if !slices.Contains(ids, id) {
				t.Fatalf("cancel of %v changed job %d", ids, id)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// POST /v1/jobs/action

var actionErrRE = regexp.MustCompile(`^((job_ids|action): |job \S+: )`)

var actionSeeds = []string{
	`{"action":"hold","job_ids":["3_[0-2]"]}`,
	`{"action":"uhold","job_ids":["3"]}`,
	`{"action":"release","job_ids":["6"]}`,
	`{"action":"Release","job_ids":["2","6"]}`,
	`{"action":"requeue","job_ids":["1"]}`,
	`{"action":"requeue","job_ids":["7,1"]}`,
	`{"action":"suspend","job_ids":["1"]}`,
	`{"action":"hold"}`,
	`{"action":"hold","job_ids":[]}`,
	`{"action":"hold","job_ids":["2"]}`,
	`{"action":"hold","job_ids":["3_9"]}`,
	`{"action":"hold","job_ids":["-1"]}`,
	`{"action":["hold"],"job_ids":["1"]}`,
	`{"action":"hold","job_ids":["1"],"force":true}`,
	`{"action":"hold","job_ids":["1"]`,
	`[{"action":"hold"}]`,
}

func FuzzDecodeJobAction(f *testing.F) {
	for i, s := range actionSeeds {
		f.Add([]byte(s), i%4 == 3)
	}
	base := newFuzzStore(f)
	f.Fuzz(func(t *testing.T, body []byte, admin bool) {
		c := &caller{user: fzAlice}
		if admin {
			c.user = fzRoot
		}
		defer fzUnchanged(t, base, fzStateOf(base))
		req, ok := fzDecodeChecked[api.JobActionRequest](t, body)
		if !ok {
			return
		}
		snap := base.Snapshot()
		cmd, err := jobActionCommand(snap, c, &req, fzEpoch)
		if err != nil {
			fzCheckRejected(t, err, actionErrRE)
			return
		}
		for _, id := range cmd.JobIDs {
			if j := snap.Job(id); j == nil || (!admin && j.User != c.user.Name) {
				t.Fatalf("action %s selects job %d: %+v", body, id, j)
			}
		}
		_, res := fzApplyAccepted(t, cmd)
		if _, ok := res.([]uint64); !ok {
			t.Fatalf("action applied as %#v", res)
		}
	})
}

// ---------------------------------------------------------------------------
// POST /v1/agent/report, /v1/agent/register, /v1/agent/heartbeat

var reportErrRE = regexp.MustCompile(`^((node|state): |job \d+ )`)

var reportSeeds = []string{
	`{"job_id":1,"node":"node1","state":"RUNNING","exit_code":0,"exit_signal":0,"usage":{"cpu_time_ns":1200000000,"max_memory_bytes":1048576,"sampled_at_unix":1767323045},"attempt":0}`,
	`{"job_id":1,"state":"COMPLETED","exit_code":0,"exit_signal":0,"start_unix":1767323000,"end_unix":1767323100,"usage":{"wall_time_ns":100000000000},"attempt":0}`,
	`{"job_id":1,"node":"node1","state":"FAILED","exit_code":2,"exit_signal":0,"reason":"exit status 2","usage":{},"attempt":0}`,
	`{"job_id":1,"node":"node1","state":"OUT_OF_MEMORY","exit_code":137,"exit_signal":9,"usage":{"oom_kills":1},"attempt":3}`,
	`{"job_id":1,"node":"node2","state":"COMPLETED"}`,
	`{"job_id":2,"state":"COMPLETED"}`,
	`{"job_id":99,"state":"RUNNING"}`,
	`{"job_id":1,"state":"PENDING"}`,
	`{"job_id":1,"state":"completed"}`,
	`{"job_id":-1,"state":"RUNNING"}`,
	`{"job_id":"1","state":"RUNNING"}`,
	`{"job_id":1,"state":"RUNNING","usage":{"cpu_time_ns":-5}}`,
	`{"job_id":1,"state":"RUNNING","usage":{"gpu":1}}`,
	`{"job_id":18446744073709551616}`,
	`{"job_id":1,"state":"RUNNING"}{}`,
}

func FuzzDecodeAgentReport(f *testing.F) {
	for _, s := range reportSeeds {
		f.Add([]byte(s))
	}
	base := newFuzzStore(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		defer fzUnchanged(t, base, fzStateOf(base))
		rep, ok := fzDecodeChecked[api.JobReport](t, body)
		if !ok {
			return
		}
		if err := checkReport(base.Snapshot(), fzNode, &rep); err != nil {
			fzCheckRejected(t, err, reportErrRE)
			return
		}
		st, res := fzApplyAccepted(t, &raftstore.Command{Type: raftstore.CmdJobReport, Report: &rep})
		changed, ok := res.(bool)
		if !ok {
			t.Fatalf("report applied as %#v", res)
		}
		if j := st.Snapshot().Job(rep.JobID); changed && rep.State != api.JobRunning && j.State != rep.State {
			t.Fatalf("final report %s left the job %s", rep.State, j.State)
		}
	})
}

var registerErrRE = regexp.MustCompile(`^(name|cpus|memory_mb|gpus): `)

var registerSeeds = []string{
	`{"name":"node1","cpus":8,"memory_mb":16384,"gpus":2,"features":["avx2","ib"],"boot_time_unix":1767300000,"agent_version":"0.3.0","arch":"amd64","os":"linux"}`,
	`{"name":"node1","cpus":64,"memory_mb":515000,"gpus":0,"boot_time_unix":0,"agent_version":"dev","arch":"arm64","os":"linux"}`,
	`{"name":"node2","cpus":8,"memory_mb":1,"gpus":0}`,
	`{"name":"node1","cpus":0,"memory_mb":1,"gpus":0}`,
	`{"name":"node1","cpus":1,"memory_mb":-1,"gpus":0}`,
	`{"name":"node1","cpus":1,"memory_mb":1,"gpus":-1}`,
	`{"name":"node1","cpus":1.5}`,
	`{"name":"node1","cpus":1,"features":"avx2"}`,
	`{"name":"node1","cpus":1,"hostname":"x"}`,
	`{"name":"node1","cpus":1,"boot_time_unix":-62135596801}`,
}

func FuzzDecodeAgentRegister(f *testing.F) {
	for _, s := range registerSeeds {
		f.Add([]byte(s))
	}
	base := newFuzzStore(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		defer fzUnchanged(t, base, fzStateOf(base))
		req, ok := fzDecodeChecked[api.AgentRegisterRequest](t, body)
		if !ok {
			return
		}
		if err := checkRegister(fzNode, &req); err != nil {
			fzCheckRejected(t, err, registerErrRE)
			return
		}
		_, res := fzApplyAccepted(t, &raftstore.Command{Type: raftstore.CmdRegisterNode, Register: &req})
		n, ok := res.(*api.Node)
		if !ok || n.Name != fzNode || n.State != api.NodeUp || n.CPUs != req.CPUs {
			t.Fatalf("registration applied as %#v", res)
		}
		// handleRegister answers the node record: it must encode.
		if _, err := json.Marshal(n); err != nil {
			t.Fatalf("registered node does not encode: %v", err)
		}
	})
}

var heartbeatSeeds = []string{
	`{"name":"node1","running":[1,3,4]}`,
	`{"name":"node1"}`,
	`{"running":[]}`,
	`{}`,
	`{"name":"node2"}`,
	`{"name":"node1","running":[-1]}`,
	`{"name":"node1","running":{"1":true}}`,
	`{"name":null,"running":null}`,
}

func FuzzDecodeAgentHeartbeat(f *testing.F) {
	for _, s := range heartbeatSeeds {
		f.Add([]byte(s))
	}
	nameRE := regexp.MustCompile(`^name: `)
	f.Fuzz(func(t *testing.T, body []byte) {
		req, ok := fzDecodeChecked[api.AgentHeartbeat](t, body)
		if !ok {
			return
		}
		err := checkHeartbeat(fzNode, &req)
		switch {
		case err != nil:
			fzCheckRejected(t, err, nameRE)
		case req.Name != "" && req.Name != fzNode:
			t.Fatalf("heartbeat of node %q accepted from %s", req.Name, fzNode)
		}
	})
}

// ---------------------------------------------------------------------------
// POST /v1/join

var joinErrRE = regexp.MustCompile(`^(token|name|raft_addr|api_addr|csr): `)

// fzCAHash in a join body stands for the fuzz CA's hash, so corpus entries
// stay valid with a CA made per test run.
const fzCAHash = "@CAHASH@"

var fzCA = sync.OnceValues(func() (*pki.CA, error) { return pki.NewCA("fuzz") })

func fzJoinBody(token, name string, csr []byte, raftAddr, apiAddr string) []byte {
	b, err := json.Marshal(api.JoinRequest{Token: token, Name: name, CSR: csr, RaftAddr: raftAddr, APIAddr: apiAddr})
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzDecodeJoin(f *testing.F) {
	ca, err := fzCA()
	if err != nil {
		f.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	csr, err := pki.NewCSR(key, "node7", []string{"node7.example.org", "10.0.0.7"})
	if err != nil {
		f.Fatal(err)
	}
	good := "stkjoin." + fzCAHash + ".AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
	other := "stkjoin." + strings.Repeat("ab", 32) + ".AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
	for _, s := range []struct {
		body       []byte
		controller bool
	}{
		{fzJoinBody(good, "node7", csr, "", ""), false},
		{fzJoinBody(good, "c2", csr, "10.0.0.2:7702", "10.0.0.2:7701"), true},
		{fzJoinBody(good, "c2", csr, "[::1]:7702", "localhost:7701"), true},
		{fzJoinBody(good, "c2", csr, "", "10.0.0.2:7701"), true},
		{fzJoinBody(good, "c2", csr, ":7702", "10.0.0.2:7701"), true},
		{fzJoinBody(good, "node7", csr, "10.0.0.2:7702", ""), false},
		{fzJoinBody(other, "node7", csr, "", ""), false},
		{fzJoinBody("stkjoin.xyz.short", "node7", csr, "", ""), false},
		{fzJoinBody(good, "-bad", csr, "", ""), false},
		{fzJoinBody(good, "node7", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "", ""), false},
		{fzJoinBody(good, "node7", nil, "", ""), false},
		{[]byte(`{"token":"` + good + `","name":"node7","csr":"not base64!"}`), false},
		{[]byte(`{"token":"` + good + `","name":"node7","csr":[45,45]}`), false},
		{[]byte(`{"token":1}`), false},
		{[]byte(`{"token":"` + good + `","name":"node7","role":"controller"}`), true},
		{[]byte(`{"token":"` + good + `","name":"node7"`), false},
	} {
		f.Add(s.body, s.controller)
	}
	hash := []byte(hex.EncodeToString(func() []byte { h := sha256.Sum256(ca.Cert.Raw); return h[:] }()))
	f.Fuzz(func(t *testing.T, body []byte, controller bool) {
		body = bytes.ReplaceAll(body, []byte(fzCAHash), hash)
		req, ok := fzDecodeChecked[api.JoinRequest](t, body)
		if !ok {
			return
		}
		role := pki.OUAgent
		if controller {
			role = pki.OUController
		}
		_, err := checkJoin(ca, &req)
		var certPEM []byte
		if err == nil {
			// The token's Argon2id match (64 MiB per check) is left out:
			// the token stands for one of role.
			certPEM, err = signJoin(ca, &req, role)
		}
		if err != nil {
			fzCheckRejected(t, err, joinErrRE)
			return
		}
		cert, err := pki.ParseCertPEM(certPEM)
		if err != nil {
			t.Fatalf("issued certificate does not parse: %v", err)
		}
		if cert.Subject.CommonName != req.Name || pki.Role(cert) != role {
			t.Fatalf("issued %q (%s) for a %s join as %q", cert.Subject.CommonName, pki.Role(cert), role, req.Name)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("issued certificate does not verify: %v", err)
		}
		if blk, _ := pem.Decode(certPEM); blk == nil || blk.Type != "CERTIFICATE" {
			t.Fatalf("issued certificate is not PEM")
		}
	})
}

// ---------------------------------------------------------------------------
// POST /v1/nodes/update, /v1/users, /v1/cluster/controller (admin and
// controller routes: the callers are trusted more, the bodies no more)

var nodeUpdateErrRE = regexp.MustCompile(`^(state|reason|nodes): `)

var nodeUpdateSeeds = []string{
	`{"nodes":["node1"],"state":"drain","reason":"disk replacement"}`,
	`{"nodes":["node[1-2]"],"state":"DOWN","reason":"power"}`,
	`{"nodes":["node1,node2"],"state":"resume"}`,
	`{"nodes":["node1 node1"],"state":"undrain"}`,
	`{"nodes":["node1"],"state":"drain"}`,
	`{"nodes":["node1"],"state":"drain","reason":"  "}`,
	`{"nodes":["node3"],"state":"idle"}`,
	`{"nodes":[],"state":"up"}`,
	`{"nodes":["node[1-"],"state":"up"}`,
	`{"nodes":["node[0-99999999]"],"state":"up"}`,
	`{"nodes":["r[1-2]n[01-02]"],"state":"up"}`,
	`{"nodes":["no/de"],"state":"up"}`,
	`{"nodes":"node1","state":"up"}`,
	`{"nodes":["node1"],"state":"maint"}`,
	`{"nodes":["a[0-65535]","b[0-65535]"],"state":"up"}`,
}

func FuzzDecodeNodeUpdate(f *testing.F) {
	for _, s := range nodeUpdateSeeds {
		f.Add([]byte(s))
	}
	base := newFuzzStore(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		defer fzUnchanged(t, base, fzStateOf(base))
		req, ok := fzDecodeChecked[api.NodeUpdateRequest](t, body)
		if !ok {
			return
		}
		cmd, err := nodeUpdateCommand(base.Snapshot(), &req, fzEpoch)
		if err != nil {
			fzCheckRejected(t, err, nodeUpdateErrRE)
			return
		}
		for i, n := range cmd.NodeNames {
			if slices.Contains(cmd.NodeNames[:i], n) {
				t.Fatalf("node %s listed twice in %v", n, cmd.NodeNames)
			}
		}
		fzApplyAccepted(t, cmd)
	})
}

var userAddErrRE = regexp.MustCompile(`^(name|account|uid|gid): `)

var userAddSeeds = []string{
	`{"name":"carol","account":"physics","uid":1002,"gid":1002}`,
	`{"name":"dave","account":"","admin":true,"uid":0,"gid":0}`,
	`{"name":"erin_1.x-y","account":"newacct","uid":4294967295,"gid":100}`,
	`{"name":"frank","uid":1003}`,
	`{"name":"alice","account":"physics","uid":1,"gid":1}`,
	`{"name":"Bad","account":"physics","uid":1,"gid":1}`,
	`{"name":"ok","account":"bad account","uid":1,"gid":1}`,
	`{"name":"ok","uid":4294967296,"gid":1}`,
	`{"name":"ok","uid":-1,"gid":1}`,
	`{"name":"ok","uid":"1000","gid":1}`,
	`{"name":"ok","admin":"yes"}`,
	`{"name":"ok","token":"x"}`,
}

func FuzzDecodeUserAdd(f *testing.F) {
	for _, s := range userAddSeeds {
		f.Add([]byte(s))
	}
	base := newFuzzStore(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		defer fzUnchanged(t, base, fzStateOf(base))
		req, ok := fzDecodeChecked[api.UserAddRequest](t, body)
		if !ok {
			return
		}
		snap := base.Snapshot()
		err := normalizeUserAdd(&req)
		var uid, gid uint32
		if err == nil {
			uid, gid, err = newUserIDs(snap, &req)
		}
		if err != nil {
			fzCheckRejected(t, err, userAddErrRE)
			return
		}
		if req.UID != nil && uid != *req.UID || req.GID != nil && gid != *req.GID {
			t.Fatalf("ids %d:%d for request %s", uid, gid, body)
		}
		st := newFuzzStore(t)
		if snap.Account(req.Account) == nil {
			parent := "root"
			if req.Account == "root" {
				parent = ""
			}
			fzApply(t, st, &raftstore.Command{Type: raftstore.CmdAddAccount, Account: &api.Account{Name: req.Account, Parent: parent}})
		}
		fzApply(t, st, &raftstore.Command{Type: raftstore.CmdAddUser, UserTokenHash: "x", User: &api.User{Name: req.Name, UID: uid, GID: gid,
			DefaultAccount: req.Account, Accounts: []string{req.Account}, Admin: req.Admin, TokenID: "t"}})
		if u := st.Snapshot().User(req.Name); u == nil || u.DefaultAccount != req.Account {
			t.Fatalf("added user is %+v", u)
		}
	})
}

var controllerErrRE = regexp.MustCompile(`^(id|raft_addr|api_addr): `)

var controllerSeeds = []string{
	`{"id":"c1","raft_addr":"10.0.0.1:7702","api_addr":"10.0.0.1:7701"}`,
	`{"id":"c1","raft_addr":"[fe80::1%eth0]:7702","api_addr":"ctl1.example.org:7701"}`,
	`{"id":"c2","raft_addr":"10.0.0.2:7702","api_addr":"10.0.0.2:7701"}`,
	`{"id":"c1","raft_addr":"10.0.0.1","api_addr":"10.0.0.1:7701"}`,
	`{"id":"c1","raft_addr":"10.0.0.1:7702"}`,
	`{"id":"c1","raft_addr":"10.0.0.1:7702","api_addr":"10.0.0.1:7701","voter":true}`,
}

func FuzzDecodeSetController(f *testing.F) {
	for _, s := range controllerSeeds {
		f.Add([]byte(s))
	}
	// A leader for postLeader to publish to: it decodes the record as
	// handleSetController does.
	var (
		mu       sync.Mutex
		received controllerRecord
		recvErr  error
	)
	leader := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rec controllerRecord
		err := decodeJSON(w, r, &rec)
		mu.Lock()
		received, recvErr = rec, err
		mu.Unlock()
		if err != nil {
			fzServer.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	}))
	f.Cleanup(leader.Close)
	client := leader.Client()
	addr := leader.Listener.Addr().String()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, ok := fzDecodeChecked[controllerRecord](t, body)
		if !ok {
			return
		}
		if err := checkControllerRecord(fzController, &req); err != nil {
			fzCheckRejected(t, err, controllerErrRE)
		}
		// Whatever a member's id and addresses, postLeader must publish
		// them as they are.
		s := &Server{id: req.ID, raftAddr: req.RaftAddr, apiAddr: req.APIAddr, ctx: context.Background()}
		err := s.postLeader(client, addr)
		mu.Lock()
		got, gotErr := received, recvErr
		mu.Unlock()
		if err != nil || gotErr != nil || got != req {
			t.Fatalf("postLeader(%+v): %v; the leader decoded %+v (%v)", req, err, got, gotErr)
		}
	})
}

// ---------------------------------------------------------------------------
// Job id selectors, dependencies and query parameters

// formatJobRef writes ref canonically: 123 or 123_[1,2,5].
func formatJobRef(ref jobRef) string {
	if ref.tasks == nil {
		return strconv.FormatUint(ref.id, 10)
	}
	parts := make([]string, len(ref.tasks))
	for i, t := range ref.tasks {
		parts[i] = strconv.Itoa(t)
	}
	return fmt.Sprintf("%d_[%s]", ref.id, strings.Join(parts, ","))
}

func fzCheckJobRef(t *testing.T, snap *raftstore.Snapshot, ref jobRef) {
	t.Helper()
	if ref.id == 0 || ref.text == "" || ref.text != strings.TrimSpace(ref.text) {
		t.Fatalf("parsed %+v", ref)
	}
	if ref.tasks != nil {
		if len(ref.tasks) == 0 || !slices.IsSorted(ref.tasks) || len(slices.Compact(slices.Clone(ref.tasks))) != len(ref.tasks) {
			t.Fatalf("%q: tasks %v are not sorted and unique", ref.text, ref.tasks)
		}
		if ref.tasks[0] < 0 || ref.tasks[len(ref.tasks)-1] > sbatch.MaxArrayTaskID {
			t.Fatalf("%q: tasks %v out of range", ref.text, ref.tasks)
		}
	}
	for _, s := range []string{ref.text, formatJobRef(ref)} {
		again, err := parseJobRef(s)
		if err != nil || again.id != ref.id || !slices.Equal(again.tasks, ref.tasks) || (again.tasks == nil) != (ref.tasks == nil) {
			t.Fatalf("%q parses to %+v (%v), want %+v", s, again, err, ref)
		}
	}
	for _, j := range ref.resolve(snap) {
		switch {
		case ref.tasks != nil:
			if _, ok := slices.BinarySearch(ref.tasks, j.ArrayTaskID); j.ArrayJobID != ref.id || !ok {
				t.Fatalf("%q resolves to job %s", ref.text, j.DisplayID())
			}
		case j.ID != ref.id && j.ArrayJobID != ref.id:
			t.Fatalf("%q resolves to job %s", ref.text, j.DisplayID())
		}
	}
}

func FuzzJobIDSelector(f *testing.F) {
	for _, s := range []string{
		"123", "123_4", "123_[1-3]", "123_[1-3,7]", "3_[0-2:2]", "1,3_[0,2], 7", "3_1%2",
		"18446744073709551615", "18446744073709551616", "0", "-1", "+1", "0x10", "1_", "1_[]", "1_[", "1_]",
		"1_[1-", "1_[5-1]", "1_[1001]", "1_[0-1000]", "1_1_2", "1__2", "_1", "1_[1,[2]]", "1]],2", ",,", " 1 , 2 ",
		"1_[1-3]x", "١٢٣", "1\n2", "1_ 2",
	} {
		f.Add(s)
	}
	snap := newFuzzStore(f).Snapshot()
	f.Fuzz(func(t *testing.T, s string) {
		if joined := strings.Join(splitOutsideBrackets(s), ","); joined != s {
			t.Fatalf("splitOutsideBrackets(%q) does not partition it: %q", s, joined)
		}
		// GET /v1/jobs?id=..., and the job_ids of cancel and action.
		refs, err := parseJobRefs([]string{s})
		if err != nil {
			if !strings.HasPrefix(err.Error(), `invalid job id "`) {
				t.Fatalf("selector error %q", err)
			}
			fzCheckWire(t, badRequest("id: %s", err), http.StatusBadRequest)
		}
		for _, ref := range refs {
			fzCheckJobRef(t, snap, ref)
		}
		// GET /v1/jobs/{id}
		ref, err := parseJobRef(s)
		if err != nil {
			fzCheckWire(t, badRequest("%s", err), http.StatusBadRequest)
			return
		}
		fzCheckJobRef(t, snap, ref)
		if len(refs) != 1 || refs[0].id != ref.id || !slices.Equal(refs[0].tasks, ref.tasks) {
			t.Fatalf("%q: one id parses as %+v but as a list as %+v", s, ref, refs)
		}
	})
}

func formatDependencies(deps []api.Dependency) string {
	var parts []string
	for _, d := range deps {
		switch {
		case d.Type == scheduler.DepSingleton:
			parts = append(parts, d.Type)
		case d.ArrayTask >= 0:
			parts = append(parts, fmt.Sprintf("%s:%d_%d", d.Type, d.JobID, d.ArrayTask))
		default:
			parts = append(parts, fmt.Sprintf("%s:%d", d.Type, d.JobID))
		}
	}
	return strings.Join(parts, ",")
}

func FuzzDependency(f *testing.F) {
	for _, s := range []string{
		"afterok:12", "afterok:12:13_2,singleton", "after:1,afterany:2_[3],afternotok:3", "AFTEROK:5", " afterok:1 , ",
		"singleton", "singleton:1", "afterok", "afterok:", "afterok:0", "afterok:1+10", "afterok:1?afterany:2",
		"before:1", "afterok:1_[1-2]", "afterok:1_1001", ",", "", "afterok:1\n+5", "afterburst:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		deps, err := parseDependencies(s)
		if err != nil {
			fzCheckRejected(t, badRequest("job.dependency: %s", err), submitErrRE)
			return
		}
		if len(deps) == 0 {
			t.Fatalf("%q: no error and no dependencies", s)
		}
		for _, d := range deps {
			switch d.Type {
			case scheduler.DepSingleton:
				if d.JobID != 0 || d.ArrayTask != -1 {
					t.Fatalf("%q: %+v", s, d)
				}
			case scheduler.DepAfter, scheduler.DepAfterOK, scheduler.DepAfterNotOK, scheduler.DepAfterAny:
				if d.JobID == 0 || d.ArrayTask < -1 || d.ArrayTask > sbatch.MaxArrayTaskID {
					t.Fatalf("%q: %+v", s, d)
				}
			default:
				t.Fatalf("%q: type %q", s, d.Type)
			}
		}
		canon := formatDependencies(deps)
		again, err := parseDependencies(canon)
		if err != nil || !slices.Equal(again, deps) {
			t.Fatalf("%q -> %q -> %+v (%v), want %+v", s, canon, again, err, deps)
		}
	})
}

var queryErrRE = regexp.MustCompile(`^(state|since|until|all|id|index|wait): `)

func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{
		"", "state=PD,R&user=alice&partition=batch&name=arr", "state=all&all=true", "state=CANCELED,CA,cd",
		"since=2026-01-01&until=2026-01-02T10:00", "since=2026-01-01T00:00:00Z&until=1767323045", "since=yesterday",
		"id=1,3_[0-1]&id=7", "id=0", "id=3_[", "all=maybe", "state=XX", "stale=true&id=1",
		"index=42&wait=1m", "index=-1", "wait=-5s", "wait=1000h", "wait=5", "%zz=1", "a;b=c", "id=1%2C2",
	} {
		f.Add(s)
	}
	snap := newFuzzStore(f).Snapshot()
	f.Fuzz(func(t *testing.T, raw string) {
		q := (&url.URL{RawQuery: raw}).Query() // as r.URL.Query(): errors dropped
		if fl, refs, err := parseListQuery(q, fzAlice, fzEpoch); err != nil {
			fzCheckRejected(t, err, queryErrRE)
		} else {
			for _, ref := range refs {
				fzCheckJobRef(t, snap, ref)
			}
			for _, j := range snap.Jobs() {
				fl.match(j)
			}
		}
		if _, wait, err := parseWorkQuery(q); err != nil {
			fzCheckRejected(t, err, queryErrRE)
		} else if wait < 0 || wait > maxWait {
			t.Fatalf("%q: wait %v", raw, wait)
		}
	})
}

// TestExpandNodesBounded: one expression may name MaxHosts nodes, a list
// no more in all (deduplicating used to be quadratic: 24 s for two).
func TestExpandNodesBounded(t *testing.T) {
	names, err := expandNodes("nodes", []string{"n[0-65535]", "n[0-9]"})
	if len(names) != 0 || err == nil || err.Error() != "nodes: more than 65536 node names" {
		t.Fatalf("got %d names, %v", len(names), err)
	}
	names, err = expandNodes("nodes", []string{"n[0-32767]", "n[0-32767]"})
	if err != nil || len(names) != 32768 || names[0] != "n0" || names[32767] != "n32767" {
		t.Fatalf("got %d names, %v", len(names), err)
	}
}

// TestNormalizeSpecOverflow: counts and sizes whose products overflow
// are refused before the scheduler's checks see them wrapped.
func TestNormalizeSpecOverflow(t *testing.T) {
	snap := newFuzzStore(t).Snapshot()
	for _, tc := range []struct {
		spec api.JobSpec
		want string
	}{
		{api.JobSpec{TasksPerNode: 1 << 62, CPUsPerTask: 4}, "job.tasks_per_node: larger than 16777216"},
		{api.JobSpec{Tasks: 1<<63 - 1, Nodes: 2}, "job.tasks: larger than 16777216"},
		{api.JobSpec{Nodes: 1 << 32, TasksPerNode: 1 << 32}, "job.nodes: larger than 16777216"},
		{api.JobSpec{MemoryPerCPUMB: 1 << 62, CPUsPerTask: 2}, "job.memory_per_cpu: 4611686018427387904M per CPU for 2 CPUs per node is too large"},
		{api.JobSpec{MemoryPerCPUMB: 1 << 40, CPUsPerTask: 1 << 24, TasksPerNode: 1 << 24}, "job.memory_per_cpu: 1099511627776M per CPU for 281474976710656 CPUs per node is too large"},
	} {
		spec := tc.spec
		spec.Script, spec.WorkDir = "#!/bin/sh\n", "/tmp"
		if err := validateSubmit(snap, fzAlice, &spec); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: %v, want %s", tc.spec, err, tc.want)
		}
	}
}

// TestDecodeJSONTooLarge covers the body limit, which fuzzing cannot reach.
func TestDecodeJSONTooLarge(t *testing.T) {
	script := strings.Repeat("x", maxBody)
	for _, body := range []string{
		`{"job":{"script":"` + script + `"}}`,
		`{"job":{"script":"#!/bin/sh"}}` + strings.Repeat(" ", maxBody),
		`{"job":{"script":"#!/bin/sh"}}` + strings.Repeat(" ", maxBody) + `{}`,
	} {
		var req api.SubmitRequest
		err := fzDecode([]byte(body), &req)
		var he *httpError
		if !errors.As(err, &he) || he.status != http.StatusRequestEntityTooLarge || strings.ContainsAny(he.msg, "\r\n") {
			t.Fatalf("%d-byte body: %v", len(body), err)
		}
		fzCheckWire(t, err, http.StatusRequestEntityTooLarge)
	}
}
