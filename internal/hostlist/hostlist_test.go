package hostlist

import (
	"slices"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"gpu1", []string{"gpu1"}},
		{"node[01-04,07],gpu1", []string{"node01", "node02", "node03", "node04", "node07", "gpu1"}},
		{"node[9-11]", []string{"node9", "node10", "node11"}},
		{"node[08-10]", []string{"node08", "node09", "node10"}},
		{"node[001-002]", []string{"node001", "node002"}},
		{"n[1-2]-ib", []string{"n1-ib", "n2-ib"}},
		{"r[1-2]n[1-2]", []string{"r1n1", "r1n2", "r2n1", "r2n2"}},
		{"a, b\tc\nd", []string{"a", "b", "c", "d"}},
		{"a,,b,", []string{"a", "b"}},
		{"[1-3]", []string{"1", "2", "3"}},
		{"n[5]", []string{"n5"}},
		{"n[3,1]", []string{"n3", "n1"}},
		{"n1,n1", []string{"n1", "n1"}},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in)
		if err != nil {
			t.Errorf("Expand(%q): %v", tt.in, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"node[1-3", "unclosed"},
		{"node1-3]", "without '['"},
		{"node[[1]]", "nested"},
		{"node[]", "empty brackets"},
		{"node[3-1]", "end before start"},
		{"node[a-b]", "not a number"},
		{"node[1-]", "missing number"},
		{"node[-1]", "missing number"},
		{"node[1,,2]", "missing number"},
		{"node[0-99999]", "more than"},
		{"a[0-999]b[0-999]", "more than"},
		{"n[1234567890123456789]", "too long"},
	}
	for _, tt := range tests {
		_, err := Expand(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Expand(%q) error = %v, want it to mention %q", tt.in, err, tt.want)
		}
	}
}

func TestCompress(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"node5"}, "node5"},
		{[]string{"node01", "node02", "node03", "node07"}, "node[01-03,07]"},
		{[]string{"node07", "node03", "node01", "node02", "node02"}, "node[01-03,07]"},
		{[]string{"gpu1", "node1", "node2"}, "gpu1,node[1-2]"},
		{[]string{"node9", "node10", "node11"}, "node[9-11]"},
		{[]string{"node08", "node09", "node10"}, "node[08-10]"},
		{[]string{"node1", "node01"}, "node[1,01]"},
		{[]string{"login", "node1"}, "login,node1"},
		{[]string{"node", "node1", "node2"}, "node,node[1-2]"},
		{[]string{"n1-ib", "n2-ib"}, "n1-ib,n2-ib"},
		{[]string{"3", "1", "2"}, "[1-3]"},
	}
	for _, tt := range tests {
		if got := Compress(tt.in); got != tt.want {
			t.Errorf("Compress(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, expr := range []string{
		"node[01-04,07],gpu1", "node[9-11],node[08-10]", "a[1-3]b[01-02],c", "x[1,01,001]",
	} {
		checkRoundTrip(t, expr)
	}
}

// checkRoundTrip verifies Compress keeps exactly the set of names Expand gave.
func checkRoundTrip(t *testing.T, expr string) {
	t.Helper()
	names, err := Expand(expr)
	if err != nil {
		return
	}
	c := Compress(names)
	back, err := Expand(c)
	if err != nil {
		t.Fatalf("Expand(Compress(Expand(%q))) = Expand(%q): %v", expr, c, err)
	}
	want := slices.Clone(names)
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(back)
	if !slices.Equal(back, want) {
		t.Fatalf("round trip of %q via %q: got %q, want %q", expr, c, back, want)
	}
	if len(back) != len(want) {
		t.Fatalf("Compress(%q) = %q repeats names", names, c)
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"node[01-04,07],gpu1", "n[9-11]", "r[1-2]n[1-2]", "a,b", "x[1,01]", "[0-3]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := Expand(s)
		if err != nil {
			return
		}
		if len(names) > MaxHosts {
			t.Fatalf("Expand(%q) gave %d names", s, len(names))
		}
		checkRoundTrip(t, s)
	})
}
