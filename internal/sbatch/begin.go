package sbatch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseBegin parses --begin the way sbatch does, relative to now (whose
// location is used for wall-clock forms): now[+count[units]] with units
// seconds (default), minutes, hours, days or weeks; YYYY-MM-DD[THH:MM[:SS]];
// HH:MM[:SS] (today, or tomorrow once that time has passed); and the
// words today, tomorrow, midnight, noon, elevenses, fika and teatime.
func ParseBegin(s string, now time.Time) (time.Time, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	bad := fmt.Errorf("invalid --begin specification %q", s)
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location()) }
	next := func(h, m int) time.Time {
		t := day(now).Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
		if !t.After(now) {
			t = t.AddDate(0, 0, 1)
		}
		return t
	}
	switch v {
	case "":
		return time.Time{}, bad
	case "now":
		return now, nil
	case "today":
		return day(now), nil
	case "tomorrow":
		return day(now).AddDate(0, 0, 1), nil
	case "midnight":
		return next(0, 0), nil
	case "noon":
		return next(12, 0), nil
	case "elevenses":
		return next(11, 0), nil
	case "fika":
		return next(15, 0), nil
	case "teatime":
		return next(16, 0), nil
	}
	if rest, ok := strings.CutPrefix(v, "now+"); ok {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		n, err := strconv.ParseInt(rest[:i], 10, 32)
		if err != nil || n < 0 {
			return time.Time{}, bad
		}
		unit := time.Second
		switch rest[i:] {
		case "", "s", "sec", "secs", "second", "seconds":
		case "m", "min", "mins", "minute", "minutes":
			unit = time.Minute
		case "h", "hour", "hours":
			unit = time.Hour
		case "d", "day", "days":
			unit = 24 * time.Hour
		case "w", "week", "weeks":
			unit = 7 * 24 * time.Hour
		default:
			return time.Time{}, bad
		}
		return now.Add(time.Duration(n) * unit), nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, strings.ToUpper(v), now.Location()); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, v, now.Location()); err == nil {
			return next(t.Hour(), t.Minute()).Add(time.Duration(t.Second()) * time.Second), nil
		}
	}
	return time.Time{}, bad
}
