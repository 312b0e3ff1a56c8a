package sbatch

import (
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	loc := time.UTC
	now := time.Date(2026, 11, 21, 10, 30, 0, 0, loc)
	at := func(y int, m time.Month, d, h, min, s int) time.Time { return time.Date(y, m, d, h, min, s, 0, loc) }
	cases := []struct {
		in   string
		past bool
		want time.Time
		err  bool
	}{
		{in: "2026-11-20", want: at(2026, 11, 20, 0, 0, 0)},
		{in: "2026-11-20T08:15", want: at(2026, 11, 20, 8, 15, 0)},
		{in: "2026-11-20T08:15:30", want: at(2026, 11, 20, 8, 15, 30)},
		{in: "now", want: now},
		{in: "now-1hour", want: now.Add(-time.Hour)},
		{in: "now-2hours", want: now.Add(-2 * time.Hour)},
		{in: "now+30minutes", want: now.Add(30 * time.Minute)},
		{in: "now-3days", want: now.AddDate(0, 0, -3)},
		{in: "now-1week", want: now.AddDate(0, 0, -7)},
		{in: "now-90", want: now.Add(-90 * time.Second)},
		{in: "today", want: at(2026, 11, 21, 0, 0, 0)},
		{in: "midnight", want: at(2026, 11, 21, 0, 0, 0)},
		{in: "tomorrow", want: at(2026, 11, 22, 0, 0, 0)},
		{in: "noon", past: true, want: at(2026, 11, 20, 12, 0, 0)},
		{in: "noon", want: at(2026, 11, 21, 12, 0, 0)},
		{in: "teatime", want: at(2026, 11, 21, 16, 0, 0)},
		{in: "09:00", want: at(2026, 11, 21, 9, 0, 0)},
		{in: "11:00", past: true, want: at(2026, 11, 20, 11, 0, 0)},
		{in: "1:30pm", want: at(2026, 11, 21, 13, 30, 0)},
		{in: "12:00 AM", want: at(2026, 11, 21, 0, 0, 0)},
		{in: "1120", want: at(2026, 11, 20, 0, 0, 0)},
		{in: "112025", want: at(2025, 11, 20, 0, 0, 0)},
		{in: "1225", past: true, want: at(2025, 12, 25, 0, 0, 0)},
		{in: "11/20", want: at(2026, 11, 20, 0, 0, 0)},
		{in: "11/20/25", want: at(2025, 11, 20, 0, 0, 0)},
		{in: "11.20-14:00", want: at(2026, 11, 20, 14, 0, 0)},
		{in: "1120-14:00:10", want: at(2026, 11, 20, 14, 0, 10)},
		{in: "", err: true},
		{in: "yesterday-ish", err: true},
		{in: "2026-13-01", err: true},
		{in: "02/31", err: true},
		{in: "25:00", err: true},
		{in: "now-1fortnight", err: true},
		{in: "13:00pm", err: true},
	}
	for _, tc := range cases {
		bias := DateAsIs
		if tc.past {
			bias = DatePast
		}
		got, err := ParseDate(tc.in, now, loc, bias)
		if tc.err {
			if err == nil {
				t.Errorf("%q: got %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("%q (past=%v): got %v %v, want %v", tc.in, tc.past, got, err, tc.want)
		}
	}
}
