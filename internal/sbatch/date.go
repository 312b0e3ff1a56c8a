package sbatch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DateBias says which way ParseDate moves a time of day or a date given
// without a year.
type DateBias int

const (
	// DateAsIs takes today's date and the current year.
	DateAsIs DateBias = iota
	// DatePast moves them back when they would lie in the future, as
	// sacct's -S/-E do.
	DatePast
	// DateFuture moves them forward when they are not after now, as
	// sbatch --begin does.
	DateFuture
)

// roll moves t by years and days when it lies on the wrong side of now.
func (b DateBias) roll(t, now time.Time, years, days int) time.Time {
	switch {
	case b == DatePast && t.After(now):
		return t.AddDate(-years, 0, -days)
	case b == DateFuture && !t.After(now):
		return t.AddDate(years, 0, days)
	}
	return t
}

// ParseDate parses the date forms Slurm's tools accept (sacct -S/-E,
// sbatch --begin, scontrol's StartTime):
//
//	YYYY-MM-DD[THH:MM[:SS]]
//	MMDD[YY][-HH:MM[:SS]], MM/DD[/YY][-HH:MM[:SS]], MM.DD[.YY][-HH:MM[:SS]]
//	HH:MM[:SS] [AM|PM]
//	now[{+|-}count[seconds|minutes|hours|days|weeks]] (singular too)
//	today, midnight, noon, elevenses, fika, teatime, tomorrow
//
// A time of day, a named hour or a date without a year moves by a day or a
// year as bias says.
func ParseDate(s string, now time.Time, loc *time.Location, bias DateBias) (time.Time, error) {
	in := s
	s = strings.TrimSpace(strings.ToLower(s))
	now = now.In(loc)
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	bad := fmt.Errorf("invalid time specification: %s", in)
	atHour := func(h, m int) time.Time {
		return bias.roll(midnight.Add(time.Duration(h)*time.Hour+time.Duration(m)*time.Minute), now, 0, 1)
	}
	switch s {
	case "":
		return time.Time{}, bad
	case "now":
		return now, nil
	case "today":
		return midnight, nil
	case "midnight":
		return atHour(0, 0), nil
	case "tomorrow":
		return midnight.AddDate(0, 0, 1), nil
	case "noon":
		return atHour(12, 0), nil
	case "elevenses":
		return atHour(11, 0), nil
	case "fika":
		return atHour(15, 0), nil
	case "teatime":
		return atHour(16, 0), nil
	}
	if rest, ok := strings.CutPrefix(s, "now"); ok {
		d, err := parseDelta(rest)
		if err != nil {
			return time.Time{}, bad
		}
		return now.Add(d), nil
	}
	// ISO: YYYY-MM-DD[THH:MM[:SS]]
	if len(s) >= 10 && s[4] == '-' && s[7] == '-' {
		date, clock, hasClock := strings.Cut(s, "t")
		t, err := time.ParseInLocation("2006-01-02", date, loc)
		if err != nil {
			return time.Time{}, bad
		}
		if hasClock {
			h, m, sec, err := parseClock(clock)
			if err != nil {
				return time.Time{}, bad
			}
			t = t.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second)
		}
		return t, nil
	}
	// HH:MM[:SS] [am|pm]: a time of day today.
	if strings.Contains(s, ":") && !strings.ContainsAny(s, "/.-") {
		clock := strings.TrimSpace(s)
		ampm := ""
		for _, suf := range []string{"am", "pm"} {
			if c, ok := strings.CutSuffix(clock, suf); ok {
				clock, ampm = strings.TrimSpace(c), suf
			}
		}
		h, m, sec, err := parseClock(clock)
		if err != nil {
			return time.Time{}, bad
		}
		if ampm != "" {
			if h < 1 || h > 12 {
				return time.Time{}, bad
			}
			h %= 12
			if ampm == "pm" {
				h += 12
			}
		}
		return bias.roll(midnight.Add(time.Duration(h)*time.Hour+time.Duration(m)*time.Minute+time.Duration(sec)*time.Second), now, 0, 1), nil
	}
	// Month and day: MMDD[YY], MM/DD[/YY], MM.DD[.YY], then -HH:MM[:SS].
	date, clock, hasClock := strings.Cut(s, "-")
	var mon, day, year int
	var err error
	explicitYear := false
	switch {
	case strings.ContainsAny(date, "/."):
		sep := "/"
		if strings.Contains(date, ".") {
			sep = "."
		}
		parts := strings.Split(date, sep)
		if len(parts) < 2 || len(parts) > 3 {
			return time.Time{}, bad
		}
		mon, err = strconv.Atoi(parts[0])
		if err == nil {
			day, err = strconv.Atoi(parts[1])
		}
		if err == nil && len(parts) == 3 {
			year, err = strconv.Atoi(parts[2])
			explicitYear = true
		}
	case len(date) == 4 || len(date) == 6:
		mon, err = strconv.Atoi(date[0:2])
		if err == nil {
			day, err = strconv.Atoi(date[2:4])
		}
		if err == nil && len(date) == 6 {
			year, err = strconv.Atoi(date[4:6])
			explicitYear = true
		}
	default:
		return time.Time{}, bad
	}
	if err != nil || mon < 1 || mon > 12 || day < 1 || day > 31 {
		return time.Time{}, bad
	}
	if !explicitYear {
		year = now.Year()
	} else if year < 100 {
		year += 2000
	}
	t := time.Date(year, time.Month(mon), day, 0, 0, 0, 0, loc)
	if t.Month() != time.Month(mon) {
		return time.Time{}, bad // e.g. 02/31
	}
	if hasClock {
		h, m, sec, err := parseClock(clock)
		if err != nil {
			return time.Time{}, bad
		}
		t = t.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second)
	}
	if !explicitYear {
		t = bias.roll(t, now, 1, 0)
	}
	return t, nil
}

// parseClock parses HH:MM[:SS].
func parseClock(s string) (h, m, sec int, err error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, 0, fmt.Errorf("bad clock")
	}
	vals := make([]int, 3)
	for i, p := range parts {
		if p == "" || len(p) > 2 {
			return 0, 0, 0, fmt.Errorf("bad clock")
		}
		if vals[i], err = strconv.Atoi(p); err != nil {
			return 0, 0, 0, err
		}
	}
	if vals[0] > 23 || vals[1] > 59 || vals[2] > 59 {
		return 0, 0, 0, fmt.Errorf("bad clock")
	}
	return vals[0], vals[1], vals[2], nil
}

// parseDelta parses the "+3hours" or "-1day" after "now".
func parseDelta(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	sign := time.Duration(1)
	switch s[0] {
	case '+':
	case '-':
		sign = -1
	default:
		return 0, fmt.Errorf("bad delta")
	}
	s = strings.TrimSpace(s[1:])
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("bad delta")
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, err
	}
	unit := time.Second
	switch strings.TrimSpace(s[i:]) {
	case "", "s", "sec", "second", "seconds":
	case "m", "min", "minute", "minutes":
		unit = time.Minute
	case "h", "hour", "hours":
		unit = time.Hour
	case "d", "day", "days":
		unit = 24 * time.Hour
	case "w", "week", "weeks":
		unit = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("bad unit")
	}
	return sign * time.Duration(n) * unit, nil
}
