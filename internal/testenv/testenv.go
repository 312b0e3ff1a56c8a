// Package testenv stops tests that cannot run on this machine: they skip
// on a developer's machine and fail in CI, where every test must run.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the environment says this is a CI run (CI set and
// not "false" or "0").
func InCI() bool {
	ci := os.Getenv("CI")
	return ci != "" && ci != "false" && ci != "0"
}

// Unavailable ends a test that cannot run here: a failure in CI, a skip
// elsewhere. The message says what is missing and how to get it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI must run this test)", msg)
		return
	}
	t.Skip(msg)
}

// RequireRoot ends the test through Unavailable unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (containers, cgroups, namespaces)")
	}
}

// RequireTools ends the test through Unavailable unless every program is
// on the PATH.
func RequireTools(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			Unavailable(t, "%s not installed (see the Makefile's deps target): %v", p, err)
		}
	}
}
