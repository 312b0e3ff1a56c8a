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
// if their time limit ends by its start. The MAINT and IGNORE_JOBS flags
// are not interpreted: every reservation behaves the same.
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
