package agent

import (
	"sort"
	"strconv"
	"strings"
)

// pickFree returns the n lowest ids of pool not in used, or nil when fewer
// than n are free. The controllers count CPUs and GPUs per node, not which
// ones: the agent chooses them, so concurrent jobs never share a core or a
// GPU.
func pickFree(pool []int, used map[int]bool, n int) []int {
	if n <= 0 {
		return nil
	}
	var out []int
	for _, id := range pool {
		if !used[id] {
			out = append(out, id)
			if len(out) == n {
				return out
			}
		}
	}
	return nil
}

// cpuList formats CPU ids as a cpuset list: "0-3,8,10-11".
func cpuList(ids []int) string {
	if len(ids) == 0 {
		return ""
	}
	s := append([]int(nil), ids...)
	sort.Ints(s)
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] <= s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(s[i]))
		if s[j] != s[i] {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(s[j]))
		}
		i = j + 1
	}
	return b.String()
}
