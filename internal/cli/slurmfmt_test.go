package cli

import (
	"testing"
	"time"
)

func TestPadStr(t *testing.T) {
	cases := []struct {
		s          string
		width      int
		right, cut bool
		want       string
	}{
		{"abc", 0, false, true, "abc"},
		{"abc", 5, false, true, "abc  "},
		{"abc", 5, true, true, "  abc"},
		{"train-model", 8, true, true, "train-mo"},
		{"train-model", 8, false, true, "train-mo"},
		{"node[1-20]", 4, false, false, "node[1-20]"},
		{"héllo", 3, false, true, "hél"},
		{"", 3, true, true, "   "},
	}
	for _, tc := range cases {
		if got := padStr(tc.s, tc.width, tc.right, tc.cut); got != tc.want {
			t.Errorf("padStr(%q, %d, %v, %v) = %q, want %q", tc.s, tc.width, tc.right, tc.cut, got, tc.want)
		}
	}
}

func TestDurations(t *testing.T) {
	cases := []struct {
		sec                   int64
		squeue, sacct, sinfoL string
	}{
		{0, "0:00", "00:00:00", "0:00"},
		{62, "1:02", "00:01:02", "1:02"},
		{3723, "1:02:03", "01:02:03", "1:02:03"},
		{93784, "1-02:03:04", "1-02:03:04", "1-02:03:04"},
		{-1, "INVALID", "INVALID", "INVALID"},
		{400 * 86400, "INVALID", "400-00:00:00", "400-00:00:00"},
	}
	for _, tc := range cases {
		if got := squeueSecs(tc.sec, true); got != tc.squeue {
			t.Errorf("squeueSecs(%d) = %q, want %q", tc.sec, got, tc.squeue)
		}
		if got := slurmSecs(tc.sec); got != tc.sacct {
			t.Errorf("slurmSecs(%d) = %q, want %q", tc.sec, got, tc.sacct)
		}
		if got := squeueSecs(tc.sec, false); got != tc.sinfoL {
			t.Errorf("squeueSecs(%d, unbounded) = %q, want %q", tc.sec, got, tc.sinfoL)
		}
	}
	if got := slurmLimit(0); got != "UNLIMITED" {
		t.Errorf("slurmLimit(0) = %q", got)
	}
}

func TestCPUTime(t *testing.T) {
	cases := []struct {
		ns   uint64
		want string
	}{
		{0, "00:00:00"},
		{5_012_000_000, "00:05.012"},
		{65_000_000_000, "00:01:05"},
		{3723_500_000_000, "01:02:03"},
		{86400_000_000_000, "1-00:00:00"},
		{999_999, "00:00:00"},
	}
	for _, tc := range cases {
		if got := cpuTime(tc.ns); got != tc.want {
			t.Errorf("cpuTime(%d) = %q, want %q", tc.ns, got, tc.want)
		}
	}
}

func TestConvertNum(t *testing.T) {
	cases := []struct {
		v    uint64
		unit int
		want string
	}{
		{0, unitNone, "0"},
		{1000, unitNone, "1000"},
		{4096, unitNone, "4K"},
		{126418944, unitNone, "123456K"},
		{4 << 30, unitNone, "4G"},
		{4000, unitMega, "4000M"},
		{4096, unitMega, "4G"},
		{1536, unitMega, "1.50G"},
		{2560 << 10, unitMega, "2.50T"},
		{1023, unitMega, "1023M"},
	}
	for _, tc := range cases {
		if got := convertNum(tc.v, tc.unit); got != tc.want {
			t.Errorf("convertNum(%d, %d) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

func TestDates(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	ts := time.Date(2026, 11, 21, 9, 0, 5, 0, time.UTC)
	cases := []struct {
		name, got, want string
	}{
		{"date", slurmDate(ts, loc, "N/A"), "2026-11-21T10:00:05"},
		{"zero", slurmDate(time.Time{}, loc, "Unknown"), "Unknown"},
		{"ctime", ctimeLine(time.Date(2026, 11, 1, 7, 8, 9, 0, time.UTC), time.UTC), "Sun Nov  1 07:08:09 2026"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
