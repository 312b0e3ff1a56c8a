package sbatch

import (
	"fmt"
	"strings"
)

// noArrayTask is what Slurm prints for %a of a job that is not an array
// task (its NO_VAL).
const noArrayTask = 4294967294

// maxPadWidth is Slurm's cap on the zero-padding width of a pattern field.
const maxPadWidth = 10

// PatternVars are the values an --output/--error pattern refers to.
type PatternVars struct {
	JobID uint64
	// ArrayJobID and ArrayTaskID identify an array task; ArrayTaskID is -1
	// for a job that is not part of an array.
	ArrayJobID  uint64
	ArrayTaskID int
	JobName     string
	User        string
	// FirstNode is the first node of the allocation; %N prints its short
	// name (up to the first dot).
	FirstNode string
}

// ExpandPattern expands a Slurm file name pattern for a batch job:
// %j job id (%J too: a batch script has no step number), %A array job id
// (the job id outside arrays), %a array task id (4294967294 outside
// arrays, as Slurm prints), %x job name, %u user, %N first node's short
// name, %n node index and %t task rank (0 for the batch script), %s step
// ("batch"), %% a percent sign. A number after % zero-pads numeric fields
// ("%4a" gives 0007), capped at 10 digits. Unknown fields stay as written.
// As in Slurm, a pattern containing a backslash is not expanded; its
// backslashes are removed instead.
func ExpandPattern(pattern string, v PatternVars) string {
	if strings.Contains(pattern, `\`) {
		return strings.ReplaceAll(pattern, `\`, "")
	}
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		j := i + 1
		for j < len(pattern) && pattern[j] >= '0' && pattern[j] <= '9' {
			j++
		}
		if j == len(pattern) {
			b.WriteString(pattern[i:])
			break
		}
		width := 0
		for _, d := range pattern[i+1 : j] {
			width = min(width*10+int(d-'0'), maxPadWidth)
		}
		num := func(n uint64) { fmt.Fprintf(&b, "%0*d", width, n) }
		switch pattern[j] {
		case '%':
			if j != i+1 {
				// "%3%": the digits are literal, the second % starts anew.
				b.WriteString(pattern[i:j])
				i = j - 1
				continue
			}
			b.WriteByte('%')
		case 'j', 'J':
			num(v.JobID)
		case 'A':
			if v.ArrayTaskID < 0 {
				num(v.JobID)
			} else {
				num(v.ArrayJobID)
			}
		case 'a':
			if v.ArrayTaskID < 0 {
				num(noArrayTask)
			} else {
				num(uint64(v.ArrayTaskID))
			}
		case 'n', 't':
			num(0)
		case 's':
			b.WriteString("batch")
		case 'x':
			b.WriteString(v.JobName)
		case 'u':
			b.WriteString(v.User)
		case 'N':
			host, _, _ := strings.Cut(v.FirstNode, ".")
			b.WriteString(host)
		default:
			b.WriteString(pattern[i : j+1])
		}
		i = j
	}
	return b.String()
}
