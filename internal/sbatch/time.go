package sbatch

import (
	"fmt"
	"strconv"
	"strings"
)

// maxTimeMinutes is the largest limit Slurm can store (its limits are 32-bit
// minute counts, INFINITE excluded).
const maxTimeMinutes = 0xfffffffe - 1

// ParseTime parses a Slurm time limit: "M", "M:S", "H:M:S", "D-H", "D-H:M"
// or "D-H:M:S". Fields are not range checked ("90" is 90 minutes, "1:90"
// is 2.5 minutes), as in Slurm. "UNLIMITED", "INFINITE" (any case) and "-1"
// mean no limit and return 0; so does a limit of zero, as Slurm documents.
// Unlike Slurm, which rounds a limit up to whole minutes, the result keeps
// seconds.
func ParseTime(s string) (int64, error) {
	switch strings.ToUpper(s) {
	case "UNLIMITED", "INFINITE", "-1":
		return 0, nil
	}
	bad := func() (int64, error) { return 0, fmt.Errorf("invalid time %q", s) }
	if s == "" {
		return bad()
	}
	days := int64(-1)
	rest := s
	if d, r, ok := strings.Cut(s, "-"); ok {
		n, ok := timeField(d)
		if !ok {
			return bad()
		}
		days, rest = n, r
	}
	var f []int64
	for part := range strings.SplitSeq(rest, ":") {
		n, ok := timeField(part)
		if !ok {
			return bad()
		}
		f = append(f, n)
	}
	var h, m, sec int64
	switch {
	case days < 0 && len(f) == 1:
		m = f[0]
	case days < 0 && len(f) == 2:
		m, sec = f[0], f[1]
	case len(f) == 3:
		h, m, sec = f[0], f[1], f[2]
	case days >= 0 && len(f) == 1:
		h = f[0]
	case days >= 0 && len(f) == 2:
		h, m = f[0], f[1]
	default:
		return bad()
	}
	days = max(days, 0)
	// Fields are at most 9 digits, so this cannot overflow.
	total := ((days*24+h)*60+m)*60 + sec
	if total > maxTimeMinutes*60 {
		return 0, fmt.Errorf("time %q is too large", s)
	}
	return total, nil
}

// timeField parses one numeric field of a time; 9 digits keeps the total
// of all fields far from overflow.
func timeField(s string) (int64, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// FormatDuration prints seconds as squeue prints TIME and TIME_LIMIT:
// "0:05", "12:34", "1:02:03", "1-00:00:00". Negative input prints
// "INVALID", as squeue does.
func FormatDuration(sec int64) string {
	if sec < 0 {
		return "INVALID"
	}
	d, h, m, s := split(sec)
	switch {
	case d > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	case h > 0:
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// FormatLimit is FormatDuration for a time limit, where 0 means no limit
// and prints "UNLIMITED".
func FormatLimit(sec int64) string {
	if sec == 0 {
		return "UNLIMITED"
	}
	return FormatDuration(sec)
}

// FormatElapsed prints seconds as sacct prints Elapsed and Timelimit and
// scontrol prints RunTime: "00:00:05", "01:02:03", "1-00:00:00".
func FormatElapsed(sec int64) string {
	if sec < 0 {
		return "INVALID"
	}
	d, h, m, s := split(sec)
	if d > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}

func split(sec int64) (d, h, m, s int64) {
	return sec / 86400, sec / 3600 % 24, sec / 60 % 60, sec % 60
}
