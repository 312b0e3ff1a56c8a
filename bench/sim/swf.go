package sim

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Job is one job of a workload. Times are whole seconds from the
// workload's origin.
type Job struct {
	ID     uint64
	Submit int64
	// Run is how long the job runs when it is not killed at its limit.
	Run   int64
	Procs int
	// ReqTime is the requested time limit (<= 0: unknown, the run time
	// is used, i.e. exact user estimates).
	ReqTime int64
	User    int
	Group   int
}

// Workload is a list of jobs in submit order and what its source says about
// the machine it ran on.
type Workload struct {
	Name string
	Jobs []Job
	// MaxNodes and MaxProcs come from the SWF header (0: not given).
	MaxNodes int
	MaxProcs int
	// Header holds the SWF header comments, without the leading ';'.
	Header []string
	// Skipped counts records dropped because they cannot be replayed:
	// negative run or submit time, or no processors.
	Skipped int
}

// SWF fields used, numbered from 1 as the format's definition does.
const (
	swfFields    = 18
	fJobNumber   = 1
	fSubmit      = 2
	fRunTime     = 4
	fAllocProcs  = 5
	fReqProcs    = 8
	fReqTime     = 9
	fUser        = 12
	fGroup       = 13
	maxLineBytes = 1 << 20
)

var fieldNames = map[int]string{
	fJobNumber: "job number", fSubmit: "submit time", fRunTime: "run time", fAllocProcs: "allocated processors",
	fReqProcs: "requested processors", fReqTime: "requested time", fUser: "user id", fGroup: "group id",
}

// ReadSWF reads a Standard Workload Format trace, gzipped or not. limit > 0
// keeps only the first limit replayable jobs.
func ReadSWF(path string, limit int) (*Workload, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w, err := ParseSWF(f, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	w.Name = path
	return w, nil
}

// ParseSWF parses an SWF trace (gzip is detected by its magic number). Jobs
// come back sorted by submit time; records with a negative run or submit
// time or no processors are counted in Skipped. A malformed line is an
// error naming its line number.
func ParseSWF(r io.Reader, limit int) (*Workload, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	w := &Workload{}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64*1024), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if c, ok := strings.CutPrefix(text, ";"); ok {
			w.header(c)
			continue
		}
		j, ok, err := parseRecord(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if !ok {
			w.Skipped++
			continue
		}
		w.Jobs = append(w.Jobs, j)
		if limit > 0 && len(w.Jobs) >= limit {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	// Traces are in submit order already; a stable sort keeps ties in
	// file order for the rare one that is not.
	slices.SortStableFunc(w.Jobs, func(a, b Job) int { return cmp.Compare(a.Submit, b.Submit) })
	return w, nil
}

// header records a comment and picks up the machine's size.
func (w *Workload) header(c string) {
	w.Header = append(w.Header, c)
	key, val, ok := strings.Cut(c, ":")
	if !ok {
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(val))
	if err != nil {
		return
	}
	switch strings.TrimSpace(key) {
	case "MaxNodes":
		w.MaxNodes = n
	case "MaxProcs":
		w.MaxProcs = n
	}
}

// parseRecord parses one job line; ok is false for a record that cannot be
// replayed.
func parseRecord(text string) (j Job, ok bool, err error) {
	f := strings.Fields(text)
	if len(f) != swfFields {
		return j, false, fmt.Errorf("want %d fields, got %d", swfFields, len(f))
	}
	var v [swfFields + 1]int64
	for _, i := range []int{fJobNumber, fSubmit, fRunTime, fAllocProcs, fReqProcs, fReqTime, fUser, fGroup} {
		if v[i], err = number(f[i-1]); err != nil {
			return j, false, fmt.Errorf("field %d (%s): %w", i, fieldNames[i], err)
		}
	}
	procs := v[fReqProcs]
	if procs <= 0 {
		procs = v[fAllocProcs]
	}
	if v[fRunTime] < 0 || v[fSubmit] < 0 || procs <= 0 {
		return j, false, nil
	}
	return Job{
		ID: uint64(max(v[fJobNumber], 0)), Submit: v[fSubmit], Run: v[fRunTime], Procs: int(procs),
		ReqTime: v[fReqTime], User: int(v[fUser]), Group: int(v[fGroup]),
	}, true, nil
}

// number parses an SWF integer. Some traces write fractional seconds, which
// are truncated.
func number(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > math.MaxInt64/2 {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	return int64(x), nil
}
