package sbatch

import (
	"strings"
	"testing"
	"time"
)

func TestParseBegin(t *testing.T) {
	now := time.Date(2026, 3, 10, 14, 30, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"now", now, false},
		{"now+60", now.Add(time.Minute), false},
		{"now+10minutes", now.Add(10 * time.Minute), false},
		{"now+1hour", now.Add(time.Hour), false},
		{"now+2days", now.Add(48 * time.Hour), false},
		{"now+1week", now.Add(7 * 24 * time.Hour), false},
		{"2026-04-01", time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), false},
		{"2026-04-01T08:15", time.Date(2026, 4, 1, 8, 15, 0, 0, time.UTC), false},
		{"2026-04-01T08:15:30", time.Date(2026, 4, 1, 8, 15, 30, 0, time.UTC), false},
		{"16:00", time.Date(2026, 3, 10, 16, 0, 0, 0, time.UTC), false},
		{"10:00", time.Date(2026, 3, 11, 10, 0, 0, 0, time.UTC), false},
		{"teatime", time.Date(2026, 3, 10, 16, 0, 0, 0, time.UTC), false},
		{"noon", time.Date(2026, 3, 11, 12, 0, 0, 0, time.UTC), false},
		{"midnight", time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC), false},
		{"tomorrow", time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC), false},
		{"", time.Time{}, true},
		{"now+5fortnights", time.Time{}, true},
		{"now+", time.Time{}, true},
		{"yesterday-ish", time.Time{}, true},
		{"25:00", time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBegin(tc.in, now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseBegin(%q) error %v", tc.in, err)
			}
			if !tc.wantErr && !got.Equal(tc.want) {
				t.Errorf("ParseBegin(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestBeginOption(t *testing.T) {
	now := time.Date(2026, 3, 10, 14, 30, 0, 0, time.UTC)
	r := mustParse(t, testInput([]string{"--begin=now+1hour", "job.sh"}, nil, nil))
	if want := now.Add(time.Hour); !r.Spec.BeginTime.Equal(want) {
		t.Errorf("BeginTime = %v, want %v", r.Spec.BeginTime, want)
	}
	if _, err := Parse(testInput([]string{"-b", "someday", "job.sh"}, nil, nil)); err == nil || !strings.Contains(err.Error(), "--begin") {
		t.Errorf("bad --begin: error %v, want one naming --begin", err)
	}
}
