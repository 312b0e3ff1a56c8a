package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Wire types and client calls for the scheduling policies (sacctmgr,
// sprio, sshare, reservations) and for job steps (srun).

// AccountingResponse lists the accounting entities sacctmgr works on.
type AccountingResponse struct {
	Accounts     []Account     `json:"accounts"`
	Users        []User        `json:"users"`
	Associations []Association `json:"associations"`
	QOS          []QOS         `json:"qos"`
}

// AccountingRequest adds, modifies or deletes accounting entities. Every
// entity in one request is applied in one Raft command: all or nothing.
type AccountingRequest struct {
	// Op is "add", "modify" or "delete".
	Op           string        `json:"op"`
	Accounts     []Account     `json:"accounts,omitempty"`
	Users        []User        `json:"users,omitempty"`
	Associations []Association `json:"associations,omitempty"`
	QOS          []QOS         `json:"qos,omitempty"`
}

// AccountingResult says what a request changed, for sacctmgr's messages.
type AccountingResult struct {
	Changed []string `json:"changed"` // "account A", "user U", "assoc A/U", "qos Q"
}

// Accounting lists accounts, users, associations and QoS.
func (c *Client) Accounting(ctx context.Context) (*AccountingResponse, error) {
	var r AccountingResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/accounting", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ChangeAccounting applies an add, modify or delete (admins only).
func (c *Client) ChangeAccounting(ctx context.Context, req AccountingRequest) (*AccountingResult, error) {
	var r AccountingResult
	if err := c.Do(ctx, http.MethodPost, "/v1/accounting", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PrioritiesResponse is sprio's data.
type PrioritiesResponse struct {
	Weights PriorityWeights   `json:"weights"`
	Jobs    []PriorityFactors `json:"jobs"`
}

// Priorities returns the priority factors of pending jobs, computed now.
func (c *Client) Priorities(ctx context.Context) (*PrioritiesResponse, error) {
	var r PrioritiesResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/priorities", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// SharesResponse is sshare's data, in tree order (parents before children).
type SharesResponse struct {
	Shares []ShareInfo `json:"shares"`
}

// Shares returns the fair-share tree computed now.
func (c *Client) Shares(ctx context.Context) (*SharesResponse, error) {
	var r SharesResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/shares", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// SchedConfigRequest replaces the scheduler configuration (admins only).
type SchedConfigRequest struct {
	Config SchedConfig `json:"config"`
}

// SchedConfig reads the scheduler configuration.
func (c *Client) SchedConfig(ctx context.Context) (*SchedConfig, error) {
	var r SchedConfig
	if err := c.Do(ctx, http.MethodGet, "/v1/schedconfig", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ReservationsResponse lists reservations.
type ReservationsResponse struct {
	Reservations []Reservation `json:"reservations"`
}

// ReservationRequest creates or updates a reservation (admins only).
// NodeCount asks the controllers to choose that many nodes (from
// Reservation.Partition or the default one) when Nodes is empty.
type ReservationRequest struct {
	Op          string      `json:"op"` // create | update | delete
	Reservation Reservation `json:"reservation"`
	NodeCount   int         `json:"node_count,omitempty"`
}

// Reservations lists reservations.
func (c *Client) Reservations(ctx context.Context) (*ReservationsResponse, error) {
	var r ReservationsResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/reservations", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ChangeReservation creates, updates or deletes a reservation; the answer
// is the reservation as stored (nodes chosen).
func (c *Client) ChangeReservation(ctx context.Context, req ReservationRequest) (*Reservation, error) {
	var r Reservation
	if err := c.Do(ctx, http.MethodPost, "/v1/reservations", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// StepCreateRequest starts an srun step inside a running job. The caller
// authenticates with the job's credential (Client.Token set to it).
type StepCreateRequest struct {
	JobID        uint64            `json:"job_id"`
	Name         string            `json:"name,omitempty"`
	Argv         []string          `json:"argv"`
	Env          map[string]string `json:"environment,omitempty"`
	WorkDir      string            `json:"current_working_directory,omitempty"`
	Nodes        int               `json:"nodes,omitempty"` // 0: all of the job's
	Tasks        int               `json:"tasks,omitempty"` // 0: the job's
	TasksPerNode int               `json:"tasks_per_node,omitempty"`
	CPUsPerTask  int               `json:"cpus_per_task,omitempty"`
	// RequestID makes the request idempotent: a retry of a request whose
	// answer was lost (the client retries through leader changes) gets
	// the step created the first time. srun sends a random one.
	RequestID string `json:"request_id,omitempty"`
}

// CreateStep starts a step; the answer is the step as recorded.
func (c *Client) CreateStep(ctx context.Context, req StepCreateRequest) (*JobStep, error) {
	var r JobStep
	if err := c.Do(ctx, http.MethodPost, "/v1/jobs/"+strconv.FormatUint(req.JobID, 10)+"/steps", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Step long-polls a step: it answers once the step's ModifyIndex passes
// index, or after about wait with the current record.
func (c *Client) Step(ctx context.Context, jobID uint64, stepID int, index uint64, wait time.Duration) (*JobStep, error) {
	q := url.Values{}
	q.Set("index", strconv.FormatUint(index, 10))
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var r JobStep
	path := "/v1/jobs/" + strconv.FormatUint(jobID, 10) + "/steps/" + strconv.Itoa(stepID) + "?" + q.Encode()
	if err := c.Do(ctx, http.MethodGet, path, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CancelStep cancels a running step (scancel JOB.STEP): its tasks are
// stopped (SIGTERM, then SIGKILL after the grace time) while the job runs
// on, and the step ends CANCELLED. The answer is the step as recorded.
// The caller is the job's owner, an admin or the job's credential.
func (c *Client) CancelStep(ctx context.Context, jobID uint64, stepID int) (*JobStep, error) {
	var r JobStep
	path := "/v1/jobs/" + strconv.FormatUint(jobID, 10) + "/steps/" + strconv.Itoa(stepID) + "/cancel"
	if err := c.Do(ctx, http.MethodPost, path, struct{}{}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// StepsResponse lists steps (sacct).
type StepsResponse struct {
	Steps []JobStep `json:"steps"`
}

// Steps lists the steps of the given jobs.
func (c *Client) Steps(ctx context.Context, jobIDs []uint64) (*StepsResponse, error) {
	q := url.Values{}
	for _, id := range jobIDs {
		q.Add("job", strconv.FormatUint(id, 10))
	}
	var r StepsResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/steps?"+q.Encode(), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// StepReport is an agent's report of one finished task of a step.
type StepReport struct {
	JobID  uint64   `json:"job_id"`
	StepID int      `json:"step_id"`
	Node   string   `json:"node"`
	Task   StepTask `json:"task"`
}

// AgentStepReport sends a finished task's result.
func (c *Client) AgentStepReport(ctx context.Context, r StepReport) error {
	return c.Do(ctx, http.MethodPost, "/v1/agent/step-report", r, nil)
}
