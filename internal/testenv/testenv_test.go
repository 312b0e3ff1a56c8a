package testenv

import "testing"

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want bool
	}{{"", false}, {"false", false}, {"0", false}, {"true", true}, {"1", true}, {"yes", true}} {
		t.Setenv("CI", tc.env)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// recorder notes how a test ended without ending the real one.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Skip(...any)           { r.skipped = true }

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		env           string
		fail, skipped bool
	}{{"true", true, false}, {"", false, true}} {
		t.Setenv("CI", tc.env)
		r := &recorder{TB: t}
		Unavailable(r, "geth not found")
		if r.failed != tc.fail || r.skipped != tc.skipped {
			t.Errorf("CI=%q: failed %v skipped %v, want %v %v", tc.env, r.failed, r.skipped, tc.fail, tc.skipped)
		}
	}
}
