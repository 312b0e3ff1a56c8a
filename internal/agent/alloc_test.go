package agent

import (
	"reflect"
	"testing"
)

func TestPickFree(t *testing.T) {
	pool := []int{0, 1, 2, 3, 4, 5}
	tests := []struct {
		name string
		used []int
		n    int
		want []int
	}{
		{"none asked", nil, 0, nil},
		{"lowest free", nil, 2, []int{0, 1}},
		{"skips used", []int{0, 2}, 3, []int{1, 3, 4}},
		{"all of them", nil, 6, pool},
		{"not enough", []int{1, 2}, 5, nil},
		{"more than the pool", nil, 7, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			used := map[int]bool{}
			for _, u := range tc.used {
				used[u] = true
			}
			if got := pickFree(pool, used, tc.n); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCPUList(t *testing.T) {
	tests := []struct {
		ids  []int
		want string
	}{
		{nil, ""},
		{[]int{3}, "3"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{0, 1, 2, 3, 8, 10, 11}, "0-3,8,10-11"},
		{[]int{5, 4, 1}, "1,4-5"},
		{[]int{2, 2, 3}, "2-3"},
	}
	for _, tc := range tests {
		if got := cpuList(tc.ids); got != tc.want {
			t.Errorf("cpuList(%v) = %q, want %q", tc.ids, got, tc.want)
		}
	}
}
