package sbatch

import (
	"fmt"
	"time"
)

// ParseBegin parses --begin relative to now (whose location is used for
// wall-clock forms): any ParseDate form, with a time of day or a named
// hour that has passed meaning tomorrow's, as sbatch does.
func ParseBegin(s string, now time.Time) (time.Time, error) {
	t, err := ParseDate(s, now, now.Location(), DateFuture)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid --begin specification %q", s)
	}
	return t, nil
}
