package accounting

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Period is the length of a statement line.
type Period string

const (
	PeriodDay   Period = "day"
	PeriodWeek  Period = "week" // ISO weeks, from Monday
	PeriodMonth Period = "month"
	PeriodAll   Period = "all"
)

// StatementFilter selects records; empty fields and zero times select all.
type StatementFilter struct {
	Account string
	User    string
	// Beneficiary selects the records that pay it and reports its earnings.
	Beneficiary string
	// From (inclusive) and To (exclusive) bound the record's time: its end,
	// else its start, else its submission.
	From, To time.Time
}

// StatementLine totals the selected records of one period (UTC), per
// account and currency; with a beneficiary, per currency only.
type StatementLine struct {
	// Start and End bound the period [Start, End); zero for PeriodAll.
	Start           time.Time `json:"start,omitzero"`
	End             time.Time `json:"end,omitzero"`
	Account         string    `json:"account,omitempty"`
	Beneficiary     string    `json:"beneficiary,omitempty"`
	Currency        string    `json:"currency"`
	Records         uint64    `json:"records"`
	CPUMillis       uint64    `json:"cpu_millis"`
	MemoryMBSeconds uint64    `json:"memory_mb_seconds"`
	GPUSeconds      uint64    `json:"gpu_seconds"`
	Charge          int64     `json:"charge"`
	// Earned is what the records paid the beneficiary, in all its roles.
	Earned int64 `json:"earned,omitempty"`
}

// Statement aggregates records into lines sorted by period, account and
// currency.
func Statement(records []UsageRecord, f StatementFilter, period Period) ([]StatementLine, error) {
	switch period {
	case PeriodDay, PeriodWeek, PeriodMonth, PeriodAll:
	default:
		return nil, fmt.Errorf("period: %q is not day, week, month or all", period)
	}
	type key struct {
		start    time.Time
		account  string
		currency string
	}
	lines := map[key]*StatementLine{}
	for i := range records {
		r := &records[i]
		t := recordTime(r)
		if (f.Account != "" && r.Account != f.Account) || (f.User != "" && r.User != f.User) ||
			(f.Beneficiary != "" && !r.Pays(f.Beneficiary)) ||
			(!f.From.IsZero() && t.Before(f.From)) || (!f.To.IsZero() && !t.Before(f.To)) {
			continue
		}
		start, end := periodOf(t, period)
		k := key{start, r.Account, r.Currency}
		if f.Beneficiary != "" {
			k.account = ""
		}
		l := lines[k]
		if l == nil {
			l = &StatementLine{Start: start, End: end, Account: k.account, Beneficiary: f.Beneficiary, Currency: r.Currency}
			lines[k] = l
		}
		l.Records++
		l.CPUMillis += r.CPUMillis
		l.MemoryMBSeconds += r.MemoryMBSeconds
		l.GPUSeconds += r.GPUSeconds
		l.Charge += r.Charge
		if f.Beneficiary != "" {
			l.Earned += r.Earnings(f.Beneficiary)
		}
	}
	out := make([]StatementLine, 0, len(lines))
	for _, l := range lines {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b StatementLine) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Account, b.Account), cmp.Compare(a.Currency, b.Currency))
	})
	return out, nil
}

func recordTime(r *UsageRecord) time.Time {
	switch {
	case !r.EndTime.IsZero():
		return r.EndTime
	case !r.StartTime.IsZero():
		return r.StartTime
	}
	return r.SubmitTime
}

// periodOf is the UTC period holding t.
func periodOf(t time.Time, p Period) (start, end time.Time) {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch p {
	case PeriodDay:
		return day, day.AddDate(0, 0, 1)
	case PeriodWeek:
		start = day.AddDate(0, 0, -((int(t.Weekday()) + 6) % 7))
		return start, start.AddDate(0, 0, 7)
	case PeriodMonth:
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	return time.Time{}, time.Time{}
}
