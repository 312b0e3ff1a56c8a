// Package hostlist expands and compresses Slurm host list expressions such
// as "node[01-04,07],gpu1".
package hostlist

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxHosts bounds how many names one expression may expand to, so a typo
// like node[0-999999999] fails instead of exhausting memory.
const MaxHosts = 65536

// Expand returns the host names an expression stands for, in the order they
// are written (duplicates are kept, as Slurm's hostlist does). Names are
// separated by commas or white space; a bracket holds comma-separated
// numbers or lo-hi ranges, and a range is zero-padded to the width of its
// lower bound ("[08-10]" gives 08,09,10). Several brackets in one name
// multiply ("r[1-2]n[1-2]"). The empty expression expands to no names.
func Expand(s string) ([]string, error) {
	var out []string
	for _, tok := range splitTop(s) {
		if tok.err != nil {
			return nil, tok.err
		}
		names, err := expandOne(tok.text, MaxHosts-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	return out, nil
}

type token struct {
	text string
	err  error
}

// splitTop splits at separators outside brackets; empty pieces are skipped
// as Slurm skips them.
func splitTop(s string) []token {
	var toks []token
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '[':
			if depth > 0 {
				return append(toks, token{err: fmt.Errorf("hostlist %q: nested '['", s)})
			}
			depth++
		case c == ']':
			if depth == 0 {
				return append(toks, token{err: fmt.Errorf("hostlist %q: ']' without '['", s)})
			}
			depth--
		case depth == 0 && isSep(c):
			if i > start {
				toks = append(toks, token{text: s[start:i]})
			}
			start = i + 1
		}
	}
	if depth > 0 {
		return append(toks, token{err: fmt.Errorf("hostlist %q: unclosed '['", s)})
	}
	if start < len(s) {
		toks = append(toks, token{text: s[start:]})
	}
	return toks
}

func isSep(c byte) bool { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// part is one piece of a name: literal text or the numbers of a bracket.
type part struct {
	lit  string
	nums []string // set for a bracket
}

func expandOne(name string, limit int) ([]string, error) {
	var parts []part
	total := 1
	for rest := name; rest != ""; {
		open := strings.IndexByte(rest, '[')
		if open < 0 {
			parts = append(parts, part{lit: rest})
			break
		}
		if open > 0 {
			parts = append(parts, part{lit: rest[:open]})
		}
		end := strings.IndexByte(rest, ']') // splitTop guarantees it exists
		nums, err := expandBracket(rest[open+1:end], limit)
		if err != nil {
			return nil, fmt.Errorf("hostlist %q: %w", name, err)
		}
		total *= len(nums)
		if total > limit {
			return nil, fmt.Errorf("hostlist %q: expands to more than %d names", name, MaxHosts)
		}
		parts = append(parts, part{nums: nums})
		rest = rest[end+1:]
	}
	out := []string{""}
	for _, p := range parts {
		if p.nums == nil {
			for i := range out {
				out[i] += p.lit
			}
			continue
		}
		next := make([]string, 0, len(out)*len(p.nums))
		for _, prefix := range out {
			for _, n := range p.nums {
				next = append(next, prefix+n)
			}
		}
		out = next
	}
	return out, nil
}

// expandBracket expands "01-03,7" to 01,02,03,7.
func expandBracket(s string, limit int) ([]string, error) {
	if s == "" {
		return nil, errors.New("empty brackets")
	}
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		loStr, hiStr, isRange := strings.Cut(item, "-")
		lo, err := parseNum(loStr)
		if err != nil {
			return nil, fmt.Errorf("bad range %q: %w", item, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseNum(hiStr); err != nil {
				return nil, fmt.Errorf("bad range %q: %w", item, err)
			}
		}
		if hi < lo {
			return nil, fmt.Errorf("bad range %q: end before start", item)
		}
		if hi-lo >= uint64(limit-len(out)) {
			return nil, fmt.Errorf("expands to more than %d names", MaxHosts)
		}
		width := len(loStr)
		for n := lo; ; n++ {
			out = append(out, pad(n, width))
			if n == hi {
				break
			}
		}
	}
	return out, nil
}

// maxDigits keeps numbers inside uint64 with room to count up.
const maxDigits = 18

func parseNum(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("missing number")
	}
	if len(s) > maxDigits {
		return 0, errors.New("number too long")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

func pad(n uint64, width int) string {
	s := strconv.FormatUint(n, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// host is a name split into a prefix and a trailing number.
type host struct {
	prefix string
	num    uint64
	// width is the zero-padded width of the number, or 0 when the number
	// is written without leading zeros.
	width  int
	digits int
	plain  bool // no usable trailing number
}

func splitHost(name string) host {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	d := name[i:]
	if d == "" || len(d) > maxDigits {
		return host{prefix: name, plain: true}
	}
	n, _ := strconv.ParseUint(d, 10, 64)
	h := host{prefix: name[:i], num: n, digits: len(d)}
	if len(d) > 1 && d[0] == '0' {
		h.width = len(d)
	}
	return h
}

// Compress returns Slurm's ranged form of names, sorted by prefix then
// number and without duplicates: node01,node02,node03,node07 gives
// "node[01-03,07]". Names must not contain separators or brackets.
func Compress(names []string) string {
	hosts := make([]host, 0, len(names))
	padded := map[string][]int{} // prefix -> zero-padded widths in use
	for _, n := range names {
		h := splitHost(n)
		hosts = append(hosts, h)
		if h.width > 0 && !slices.Contains(padded[h.prefix], h.width) {
			padded[h.prefix] = append(padded[h.prefix], h.width)
		}
	}
	// A number written without zeros joins a padded range when padding
	// would not change it (node10 with node01..node09), as Slurm does.
	for i, h := range hosts {
		if h.plain || h.width > 0 {
			continue
		}
		best := 0
		for _, w := range padded[h.prefix] {
			if w <= h.digits && w > best {
				best = w
			}
		}
		hosts[i].width = best
	}
	slices.SortFunc(hosts, func(a, b host) int {
		if c := strings.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		if a.plain != b.plain {
			if a.plain {
				return -1
			}
			return 1
		}
		if a.width != b.width {
			return a.width - b.width
		}
		switch {
		case a.num < b.num:
			return -1
		case a.num > b.num:
			return 1
		}
		return 0
	})
	hosts = slices.Compact(hosts)

	var out []string
	for i := 0; i < len(hosts); {
		h := hosts[i]
		if h.plain {
			out = append(out, h.prefix)
			i++
			continue
		}
		j := i
		for j < len(hosts) && !hosts[j].plain && hosts[j].prefix == h.prefix {
			j++
		}
		out = append(out, compressGroup(hosts[i:j]))
		i = j
	}
	return strings.Join(out, ",")
}

// compressGroup renders hosts sharing a prefix, sorted by width then number.
func compressGroup(hs []host) string {
	if len(hs) == 1 {
		return hs[0].prefix + pad(hs[0].num, hs[0].width)
	}
	var ranges []string
	for i := 0; i < len(hs); {
		j := i
		for j+1 < len(hs) && hs[j+1].width == hs[i].width && hs[j+1].num == hs[j].num+1 {
			j++
		}
		r := pad(hs[i].num, hs[i].width)
		if j > i {
			r += "-" + pad(hs[j].num, hs[i].width)
		}
		ranges = append(ranges, r)
		i = j + 1
	}
	return hs[0].prefix + "[" + strings.Join(ranges, ",") + "]"
}
