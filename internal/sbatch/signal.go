package sbatch

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultWarnTime is --signal's TIME when it has none, as in Slurm.
const defaultWarnTime = 60

// ParseSignalOption parses --signal=[{R|B}:]SIG[@TIME]: the signal (a
// number or a name, with or without SIG), the seconds before the time
// limit it is sent at (0-65535, default 60) and whether only the batch
// shell gets it (B). R (at a reservation's end) is not implemented.
func ParseSignalOption(v string) (sig, before int, batchOnly bool, err error) {
	spec := v
	if flags, rest, ok := strings.Cut(spec, ":"); ok {
		for _, f := range flags {
			switch f {
			case 'B', 'b':
				batchOnly = true
			case 'R', 'r':
				return 0, 0, false, fmt.Errorf("--signal=%s: the R flag (signal at the reservation's end) is not implemented", v)
			default:
				return 0, 0, false, fmt.Errorf("--signal=%s: invalid flag %q (B or R)", v, f)
			}
		}
		spec = rest
	}
	name, at, hasAt := strings.Cut(spec, "@")
	before = defaultWarnTime
	if hasAt {
		n, err := strconv.Atoi(at)
		if err != nil || n < 0 || n > 0xffff {
			return 0, 0, false, fmt.Errorf("--signal=%s: invalid time %q (seconds, 0-65535)", v, at)
		}
		before = n
	}
	if sig = SignalNumber(name); sig == 0 {
		return 0, 0, false, fmt.Errorf("--signal=%s: invalid signal %q", v, name)
	}
	return sig, before, batchOnly, nil
}

// SignalNumber is the signal a name (USR1, SIGUSR1, usr1) or number (1-64)
// stands for, or 0.
func SignalNumber(name string) int {
	if n, err := strconv.Atoi(name); err == nil {
		if n >= 1 && n <= 64 {
			return n
		}
		return 0
	}
	up := strings.ToUpper(strings.TrimSpace(name))
	if up == "" {
		return 0
	}
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	return int(unix.SignalNum(up))
}
