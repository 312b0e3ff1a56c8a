package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
)

// State-dir layout:
//
//	tls/ca.pem, tls/agent.pem, tls/agent-key.pem   identity from the join
//	jobs/<job id>.<attempt>/                         one dir per launched attempt
//	jobs/<job id>.<attempt>/agent.json               the agent's record (jobMeta)
//	images/                                          executor image cache
//
// Everything else in a job dir belongs to the executor. A job dir exists
// from just before launch until its terminal state was accepted by the
// controllers, so its existence is what makes launches idempotent and exit
// statuses survive agent restarts.
const (
	jobsSubdir   = "jobs"
	imagesSubdir = "images"
	metaFile     = "agent.json"
)

// jobKey names one attempt of a job: a requeued job runs again under a new
// attempt (its restart count) in a fresh dir.
type jobKey struct {
	ID      uint64
	Attempt int
}

func (k jobKey) String() string {
	return strconv.FormatUint(k.ID, 10) + "." + strconv.Itoa(k.Attempt)
}

func keyLess(a, b jobKey) bool {
	return a.ID < b.ID || (a.ID == b.ID && a.Attempt < b.Attempt)
}

// parseJobKey parses a job dir name "<id>.<attempt>".
func parseJobKey(name string) (jobKey, bool) {
	a, b, ok := strings.Cut(name, ".")
	if !ok {
		return jobKey{}, false
	}
	id, err := strconv.ParseUint(a, 10, 64)
	if err != nil || id == 0 {
		return jobKey{}, false
	}
	att, err := strconv.Atoi(b)
	if err != nil || att < 0 {
		return jobKey{}, false
	}
	k := jobKey{id, att}
	if k.String() != name {
		return jobKey{}, false // "007.1" and friends: not a name we made
	}
	return k, true
}

// outcome is a terminal state the agent decided itself, without a shim:
// the launch failed, or the job was cancelled before it started here.
type outcome struct {
	State    api.JobState `json:"state"`
	ExitCode int          `json:"exit_code"`
	Reason   string       `json:"reason"`
	At       time.Time    `json:"at"`
}

// jobMeta is the agent's own record in a job dir.
type jobMeta struct {
	JobID   uint64 `json:"job_id"`
	Attempt int    `json:"attempt"`
	// CPUIDs and GPUs are the CPUs and GPU indices this job was given, so
	// an agent restarted mid-job does not hand them out again.
	CPUIDs  []int     `json:"cpu_ids,omitempty"`
	GPUs    []int     `json:"gpus,omitempty"`
	Created time.Time `json:"created"`
	// Launched is set once the executor accepted the job: a dir without it
	// is a launch that was interrupted.
	Launched bool      `json:"launched,omitempty"`
	Started  time.Time `json:"started,omitzero"` // when Launch returned
	Outcome  *outcome  `json:"outcome,omitempty"`
	// Abandoned jobs were requeued or removed by the controllers: they are
	// stopped and deleted without a report.
	Abandoned bool `json:"abandoned,omitempty"`
}

func (m *jobMeta) key() jobKey { return jobKey{m.JobID, m.Attempt} }

func jobDir(stateDir string, k jobKey) string {
	return filepath.Join(stateDir, jobsSubdir, k.String())
}

// writeMeta replaces a job dir's record.
func writeMeta(dir string, m *jobMeta) error { return writeRecord(filepath.Join(dir, metaFile), m) }

// writeRecord replaces a root-only JSON record atomically so a crash
// leaves the old or the new one, never half of either.
func writeRecord(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFile(path, b, 0o600)
}

func readMeta(dir string) (*jobMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var m jobMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, metaFile), err)
	}
	return &m, nil
}

// scannedJob is a job dir found at start.
type scannedJob struct {
	Dir  string
	Meta *jobMeta
}

// scanJobs lists the job dirs left by an earlier run. A dir without a
// readable record (a crash between mkdir and the first write) still gets a
// minimal one from its name so it is watched and cleaned up like the others.
func scanJobs(stateDir string) ([]scannedJob, []error) {
	root := filepath.Join(stateDir, jobsSubdir)
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{err}
	}
	var out []scannedJob
	var errs []error
	for _, e := range ents {
		k, ok := parseJobKey(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		m, err := readMeta(dir)
		if err != nil {
			errs = append(errs, err)
			m = &jobMeta{JobID: k.ID, Attempt: k.Attempt}
		}
		if m.key() != k {
			errs = append(errs, fmt.Errorf("%s: record names job %s; using the dir name", dir, m.key()))
			m.JobID, m.Attempt = k.ID, k.Attempt
		}
		out = append(out, scannedJob{Dir: dir, Meta: m})
	}
	sort.Slice(out, func(i, j int) bool { return keyLess(out[i].Meta.key(), out[j].Meta.key()) })
	return out, errs
}
