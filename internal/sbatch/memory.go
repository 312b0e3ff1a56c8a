package sbatch

import (
	"fmt"
	"math"
	"strconv"
)

// ParseMemory parses a Slurm memory size into MiB: a whole number with an
// optional K, M, G or T suffix (any case, optionally followed by B); no
// suffix means MiB. K rounds up to whole MiB, as Slurm does. "0" returns 0,
// which for --mem Slurm reads as "all the memory of each node"; callers
// decide what 0 means for them.
func ParseMemory(s string) (int64, error) {
	bad := func() (int64, error) { return 0, fmt.Errorf("invalid memory size %q", s) }
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 18 {
		return bad()
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return bad()
	}
	suffix := s[i:]
	if len(suffix) == 2 && (suffix[1] == 'B' || suffix[1] == 'b') {
		suffix = suffix[:1]
	}
	var mul int64
	switch suffix {
	case "":
		return n, nil
	case "K", "k":
		return (n + 1023) / 1024, nil
	case "M", "m":
		mul = 1
	case "G", "g":
		mul = 1 << 10
	case "T", "t":
		mul = 1 << 20
	default:
		return bad()
	}
	if n > math.MaxInt64/mul {
		return 0, fmt.Errorf("memory size %q is too large", s)
	}
	return n * mul, nil
}
