package main

// Submission through each system's REST API (-via api): one long-lived
// HTTP client per worker, the way a portal or a workflow service submits.
//
//   - Slurm: slurmrestd (-s openapi/v0.0.38, -a rest_auth/local) on a Unix
//     socket; POST /slurm/v0.0.38/job/submit over HTTP/1.1 keep-alive, one
//     connection per worker. rest_auth/local authenticates the connecting
//     process by SO_PEERCRED (it must run as slurmrestd's uid: root here,
//     as the sbatch runs submit as root), and slurmrestd signs its RPCs to
//     slurmctld with munge, as sbatch does.
//   - Stockade: api.Client (the sbatch command's client: HTTPS, HTTP/2, one
//     connection per client), POST /v1/jobs with the JobSpec sbatch builds
//     for the same options (internal/sbatch.Parse) and the same user token.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

// submitter submits one job and returns its id. Each client worker has its
// own (its own sbatch processes, or its own API client and connection).
type submitter func(ctx context.Context) (uint64, error)

// clientStats is what the submitters count.
type clientStats struct {
	failures atomic.Int64 // failed submissions, retried
	cpu      atomic.Int64 // ns of CPU of the sbatch processes
	dials    atomic.Int64 // connections the API clients opened
}

func newSubmitters(o runOpts, st *clientStats) ([]submitter, error) {
	subs := make([]submitter, o.clients)
	switch {
	case o.via == "sbatch":
		env := clientEnv()
		for i := range subs {
			subs[i] = func(ctx context.Context) (uint64, error) {
				return submit(ctx, o, env, &st.failures, &st.cpu)
			}
		}
	case o.system == "slurm":
		body, err := slurmRESTBody(o)
		if err != nil {
			return nil, err
		}
		url := "http://slurmrestd/slurm/" + o.restVersion + "/job/submit"
		for i := range subs {
			hc := unixHTTPClient(o.socket, &st.dials)
			subs[i] = func(ctx context.Context) (uint64, error) {
				var last error
				for attempt := 0; attempt < 5; attempt++ {
					id, err := slurmRESTSubmit(ctx, hc, url, body)
					if err == nil {
						return id, nil
					}
					last = err
					if ctx.Err() != nil {
						break
					}
					st.failures.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				return 0, last
			}
		}
	case o.system == "stockade":
		spec, err := stockadeSpec(o)
		if err != nil {
			return nil, err
		}
		for i := range subs {
			cl, err := stockadeClient()
			if err != nil {
				return nil, err
			}
			if tr, ok := cl.HTTP.Transport.(*http.Transport); ok {
				dial := tr.DialContext
				tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
					st.dials.Add(1)
					return dial(ctx, network, addr)
				}
			}
			subs[i] = func(ctx context.Context) (uint64, error) {
				// api.Client retries connection errors and 502/503 itself
				// (submits are idempotent by SubmitID), as sbatch's does.
				rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				s := spec
				s.SubmitID = randomID()
				resp, err := cl.Submit(rctx, api.SubmitRequest{Spec: s})
				if err != nil {
					return 0, fmt.Errorf("stockade submit: %w", err)
				}
				return resp.JobID, nil
			}
		}
	default:
		return nil, fmt.Errorf("-via api: unknown system %q", o.system)
	}
	return subs, nil
}

// selfCPU is the CPU time this process has used (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// envMap is clientEnv as a map: the environment sbatch would export.
func envMap() map[string]string {
	m := map[string]string{}
	for _, kv := range clientEnv() {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// stockadeSpec is the JobSpec Stockade's sbatch sends for sbatchArgs, from
// the same parser and the same inputs: the client environment without the
// submitter's credentials (internal/cli/sbatch.go drops them), the work
// directory. Each submission adds its own SubmitID, as sbatch does.
func stockadeSpec(o runOpts) (api.JobSpec, error) {
	env := envMap()
	delete(env, "STOCKADE_TOKEN")
	delete(env, "STOCKADE_JOB_CREDENTIAL")
	req, err := sbatch.Parse(sbatch.Input{
		Args: sbatchArgs(o.hold), Env: env, Cwd: o.dir, ReadFile: os.ReadFile, Stdin: strings.NewReader(""),
	})
	if err != nil {
		return api.JobSpec{}, fmt.Errorf("building the job spec: %w", err)
	}
	return req.Spec, nil
}

// slurmRESTBody is the v0.0.38 job submission for the same job as
// sbatchArgs: the script sbatch --wrap=true makes, name bench, 1 task, 1
// CPU per task, the work directory (output goes to the default
// slurm-%j.out there, as with sbatch), the client environment.
func slurmRESTBody(o runOpts) ([]byte, error) {
	job := map[string]any{
		"name":                      "bench",
		"tasks":                     1,
		"cpus_per_task":             1,
		"current_working_directory": o.dir,
		"environment":               envMap(),
	}
	if o.hold {
		job["hold"] = true
	}
	return json.Marshal(map[string]any{
		"script": "#!/bin/sh\n# This script was created by sbatch --wrap.\n\ntrue\n",
		"job":    job,
	})
}

// unixHTTPClient is an HTTP/1.1 client with one keep-alive connection to
// a Unix socket; dials counts the connections it opens.
func unixHTTPClient(socket string, dials *atomic.Int64) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// slurmRESTResponse is what slurmrestd answers (v0.0.38; the fields used).
type slurmRESTResponse struct {
	JobID  uint64 `json:"job_id"`
	Errors []struct {
		Error       string `json:"error"`
		ErrorNumber int    `json:"error_number"`
		ErrorCode   int    `json:"error_code"`
		Description string `json:"description"`
	} `json:"errors"`
}

func slurmRESTSubmit(ctx context.Context, hc *http.Client, url string, body []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("slurmrestd: %w", err)
	}
	// Read it all, so that the connection is reused.
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("slurmrestd: %w", err)
	}
	var r slurmRESTResponse
	jerr := json.Unmarshal(data, &r)
	// A held job comes with an "error" (2042, "Job is in held state,
	// pending scheduler release"), as sbatch's RPC answer does: the job id
	// is what counts.
	if resp.StatusCode != http.StatusOK || jerr != nil || r.JobID == 0 {
		msg := strings.Join(strings.Fields(string(data)), " ")
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		return 0, fmt.Errorf("slurmrestd: %s: %s", resp.Status, msg)
	}
	return r.JobID, nil
}

// slurmRESTReady waits until slurmrestd answers its ping (on a connection
// of its own, before anything is measured).
func slurmRESTReady(o runOpts, wait time.Duration) error {
	hc := unixHTTPClient(o.socket, nil)
	defer hc.CloseIdleConnections()
	url := "http://slurmrestd/slurm/" + o.restVersion + "/ping"
	deadline := time.Now().Add(wait)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.Join(strings.Fields(string(data)), " "))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slurmrestd at %s does not answer: %w", o.socket, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
