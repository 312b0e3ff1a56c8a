package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stockade-hpc/stockade/internal/sbatch"
)

// Formatting primitives shared by the Slurm commands. Each mirrors one
// routine of Slurm's own tools, because scripts parse these columns.

// padStr renders s into a field as squeue and sinfo do: width 0 prints s
// as is; otherwise s is cut to width (when cut) and padded, on the left
// when right-justified, else on the right.
func padStr(s string, width int, right, cut bool) string {
	if width <= 0 {
		return s
	}
	n := utf8.RuneCountInString(s)
	if cut && n > width {
		r := []rune(s)
		return string(r[:width])
	}
	if n >= width {
		return s
	}
	pad := strings.Repeat(" ", width-n)
	if right {
		return pad + s
	}
	return s + pad
}

// fieldWidth applies the N of a format item's "%N" to a field's width:
// N replaces it unless it is 0 (negative: left-justified). It is false
// when N is not a number.
func fieldWidth(width *int, n string, given bool) bool {
	if !given {
		return true
	}
	w, err := strconv.Atoi(n)
	if err != nil {
		return false
	}
	if w != 0 {
		*width = w
	}
	return true
}

// printCol is one column of Slurm's print_fields layout: its header,
// width (negative: left-justified) and print kind.
type printCol struct {
	header string
	width  int
	kind   int
}

// alignedHeader writes print_fields' header for aligned columns: each
// name cut and padded to its width, then a line of dashes.
func alignedHeader(b *strings.Builder, cols []printCol) {
	for _, c := range cols {
		abs := max(c.width, -c.width)
		h := c.header
		if utf8.RuneCountInString(h) > abs {
			h = string([]rune(h)[:abs])
		}
		b.WriteString(padStr(h, abs, c.width > 0, false) + " ")
	}
	b.WriteByte('\n')
	for _, c := range cols {
		b.WriteString(strings.Repeat("-", max(c.width, -c.width)) + " ")
	}
	b.WriteByte('\n')
}

// yearSeconds bounds the times squeue prints; beyond it squeue says INVALID.
const yearSeconds = 365 * 24 * 3600

// squeueSecs formats seconds as squeue and sinfo do: M:SS, H:MM:SS or
// D-HH:MM:SS; negative values print INVALID and, with bounded, so do
// values over a year, as squeue's do.
func squeueSecs(sec int64, bounded bool) string {
	if bounded && sec > yearSeconds {
		return "INVALID"
	}
	return sbatch.FormatDuration(sec)
}

// slurmSecs is Slurm's secs2time_str (sacct Elapsed, scontrol RunTime):
// HH:MM:SS or D-HH:MM:SS.
func slurmSecs(sec int64) string { return sbatch.FormatElapsed(sec) }

// slurmLimit formats a time limit in seconds as Slurm's mins2time_str
// does; 0 is no limit.
func slurmLimit(sec int64) string {
	if sec <= 0 {
		return "UNLIMITED"
	}
	return slurmSecs(sec)
}

// cpuTime is sacct's TotalCPU/UserCPU/SystemCPU: MM:SS.mmm under an hour
// when there are milliseconds, else HH:MM:SS or D-HH:MM:SS.
func cpuTime(ns uint64) string {
	secs := int64(ns / 1e9)
	ms := int64(ns % 1e9 / 1e6)
	d, h, m, s := secs/86400, secs/3600%24, secs/60%60, secs%60
	switch {
	case d > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	case h > 0:
		return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	case ms > 0:
		return fmt.Sprintf("%02d:%02d.%03d", m, s, ms)
	}
	return fmt.Sprintf("00:%02d:%02d", m, s)
}

// slurmTimeLayout is Slurm's default time format (ISO 8601, local time).
const slurmTimeLayout = "2006-01-02T15:04:05"

// slurmDate formats a timestamp in loc; a zero time prints as none.
func slurmDate(t time.Time, loc *time.Location, none string) string {
	if t.IsZero() {
		return none
	}
	return t.In(loc).Format(slurmTimeLayout)
}

// ctimeLine is the date line squeue -l and sinfo -l print first (ctime(3)).
func ctimeLine(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("Mon Jan _2 15:04:05 2006")
}

// Units for convertNum, in Slurm's order.
const (
	unitNone = iota
	unitKilo
	unitMega
)

// convertNum is Slurm's convert_num_unit with CONVERT_NUM_UNIT_EXACT, the
// default of its tools: divide by 1024 while no precision is lost (half
// values count as exact), then print the integer or two decimals with the
// unit letter. 4000 MiB stays 4000M, 4096 MiB is 4G, 1536 MiB is 1.50G.
func convertNum(v uint64, unit int) string {
	if v == 0 {
		return "0"
	}
	const letters = "\x00KMGTP"
	num := float64(v)
	for num >= 1024 && unit < len(letters)-1 {
		// Slurm tests the truncated value, as here.
		if uint64(num)%512 != 0 {
			break
		}
		num /= 1024
		unit++
	}
	suffix := ""
	if unit > 0 {
		suffix = string(letters[unit])
	}
	if num == float64(uint64(num)) {
		return strconv.FormatUint(uint64(num), 10) + suffix
	}
	return strconv.FormatFloat(num, 'f', 2, 64) + suffix
}

// memMB formats a memory size in MiB (node and job sizes).
func memMB(mb int64) string {
	if mb <= 0 {
		return "0"
	}
	return convertNum(uint64(mb), unitMega)
}
