package scheduler

import (
	"slices"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// resvIndex holds the reservations that have not ended. While one is
// active its nodes run only jobs that name it (as Slurm's --reservation)
// and that it admits; before it starts, other jobs may use its nodes only
// if their time limit ends by its start. Flags change nothing here: MAINT
// only shows in node states and IGNORE_JOBS only matters when the
// reservation is made (RunningInTheWay). A job that names a reservation
// starts in it even if its time limit runs past the reservation's end, as
// in Slurm: it is ended then (ReservationEnds).
type resvIndex struct {
	now    time.Time
	list   []*api.Reservation // by name
	byName map[string]int
	masks  [][]uint64 // node bitset per list entry, built with the pool
	// cache maps a base candidate mask and the per-reservation verdicts
	// to the restricted mask.
	cache map[*uint64]map[string][]uint64
	sig   []byte
}

func newResvIndex(now time.Time, st State) *resvIndex {
	var list []*api.Reservation
	for _, r := range st.Reservations() {
		if r.End.After(now) {
			list = append(list, r)
		}
	}
	if len(list) == 0 {
		return nil
	}
	slices.SortFunc(list, func(a, b *api.Reservation) int { return strings.Compare(a.Name, b.Name) })
	rv := &resvIndex{now: now, list: list, byName: make(map[string]int, len(list)),
		cache: make(map[*uint64]map[string][]uint64), sig: make([]byte, len(list))}
	for i, r := range list {
		rv.byName[r.Name] = i
	}
	return rv
}

// reservationGate checks a job that names a reservation: it runs only in
// an existing one that admits it, and only once it has started (the start
// is then returned as the job's expected start).
func (s *pass) reservationGate(q *queued) (reason string, start time.Time) {
	name := q.job.Spec.Reservation
	if name == "" {
		return "", time.Time{}
	}
	i, ok := 0, false
	if s.rv != nil {
		i, ok = s.rv.byName[name]
	}
	if !ok {
		return api.ReasonReservation, time.Time{}
	}
	r := s.rv.list[i]
	if !r.Admits(q.job.User, q.job.Spec.Account) {
		return api.ReasonReservation, time.Time{}
	}
	if !r.Active(s.now) {
		return api.ReasonReservation, r.Start
	}
	q.resv = i
	return "", time.Time{}
}

// restrict narrows a job's candidate nodes for reservations: to its own
// reservation's nodes, minus those of every other reservation that is
// active or starts before the job would end.
func (rv *resvIndex) restrict(s *pass, base []uint64, q *queued) []uint64 {
	if len(base) == 0 {
		return base
	}
	end := limitDur(q.limit)
	narrowed := false
	for i, r := range rv.list {
		v := byte(0)
		switch {
		case i == q.resv:
			v = 2
		case r.Active(rv.now) || end == never || rv.now.Add(end).After(r.Start):
			v = 1
		}
		rv.sig[i] = v
		narrowed = narrowed || v != 0
	}
	if !narrowed {
		return base
	}
	byBase := rv.cache[&base[0]]
	if m, ok := byBase[string(rv.sig)]; ok {
		return m
	}
	if byBase == nil {
		byBase = make(map[string][]uint64)
		rv.cache[&base[0]] = byBase
	}
	if rv.masks == nil {
		p := s.pool
		rv.masks = make([][]uint64, len(rv.list))
		for i, r := range rv.list {
			m := make([]uint64, p.words)
			for _, name := range r.Nodes {
				if x, ok := p.byName[name]; ok {
					m[x/64] |= 1 << (x % 64)
				}
			}
			rv.masks[i] = m
		}
	}
	m := slices.Clone(base)
	for i, v := range rv.sig {
		for w := range m {
			switch v {
			case 1:
				m[w] &^= rv.masks[i][w]
			case 2:
				m[w] &= rv.masks[i][w]
			}
		}
	}
	byBase[string(rv.sig)] = m
	return m
}

// OverRunUnlimited is a ResvOverRun of UNLIMITED: jobs are never ended
// because their reservation ended.
const OverRunUnlimited time.Duration = -1

// startedIn reports whether running job j started in reservation r: it
// names r and started before r's end.
func startedIn(j *api.Job, r *api.Reservation) bool {
	return j.State == api.JobRunning && j.Spec.Reservation == r.Name && j.StartTime.Before(r.End)
}

// ReservationEnds returns the running jobs to end at now because the
// reservation they started in ended overRun ago or earlier (Slurm's
// ResvOverRun; OverRunUnlimited: none), in job id order. Jobs already
// being cancelled are left out.
func ReservationEnds(now time.Time, st State, overRun time.Duration) []uint64 {
	if overRun < 0 {
		return nil
	}
	var ended map[string]*api.Reservation
	for _, r := range st.Reservations() {
		if !now.Before(r.End.Add(overRun)) {
			if ended == nil {
				ended = map[string]*api.Reservation{}
			}
			ended[r.Name] = r
		}
	}
	if ended == nil {
		return nil
	}
	var out []uint64
	for _, j := range st.RunningJobs() {
		if r := ended[j.Spec.Reservation]; r != nil && !j.CancelRequested && startedIn(j, r) {
			out = append(out, j.ID)
		}
	}
	slices.Sort(out)
	return out
}

// ReservationDone reports whether reservation r may be removed at now: it
// has ended and, unless overRun is OverRunUnlimited, its over-run time is
// over and no job that started in it still runs (its record is what
// ReservationEnds needs to end them).
func ReservationDone(now time.Time, st State, r *api.Reservation, overRun time.Duration) bool {
	if now.Before(r.End) {
		return false
	}
	if overRun < 0 {
		return true
	}
	if now.Before(r.End.Add(overRun)) {
		return false
	}
	return !slices.ContainsFunc(st.RunningJobs(), func(j *api.Job) bool { return startedIn(j, r) })
}

// ReservationBoundary reports whether a reservation starts or ends in
// (after, upTo]: a change of which nodes pending jobs may use, so worth
// a scheduler pass.
func ReservationBoundary(st State, after, upTo time.Time) bool {
	in := func(t time.Time) bool { return t.After(after) && !t.After(upTo) }
	return slices.ContainsFunc(st.Reservations(), func(r *api.Reservation) bool { return in(r.Start) || in(r.End) })
}

// RunningInTheWay maps each node to the lowest id of a running job on it
// that would keep running when reservation r starts (as Slurm's
// "Requested nodes are busy" check: a job without a time limit always
// does), not counting jobs that started in r itself. It is nil when r
// has the IGNORE_JOBS flag. MAINT alone does not ignore jobs, as in Slurm
// (maintenance reservations usually give both).
func RunningInTheWay(st State, r *api.Reservation) map[string]uint64 {
	if r.HasFlag(api.ResvFlagIgnoreJobs) {
		return nil
	}
	out := map[string]uint64{}
	for _, j := range st.RunningJobs() {
		if j.Spec.Reservation == r.Name && r.Name != "" {
			continue
		}
		if lim := limitDur(j.TimeLimitSec); lim != never && !j.StartTime.Add(lim).After(r.Start) {
			continue
		}
		for _, n := range j.Nodes {
			if id, ok := out[n]; !ok || j.ID < id {
				out[n] = j.ID
			}
		}
	}
	return out
}
