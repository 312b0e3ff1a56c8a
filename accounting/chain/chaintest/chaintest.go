// Package chaintest finds the geth binary for tests that run a real chain:
// accounting/chain's, internal/server's and tests/'s.
package chaintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stockade-hpc/stockade/internal/testenv"
)

// Geth is the absolute path of geth from `make geth`: $STOCKADE_GETH (a
// relative path is taken from the module root, as make gives it), else
// bin/tools/geth under the module root. Missing, the test fails under
// CI=true, where every test must run, and is skipped elsewhere.
func Geth(t testing.TB) string {
	t.Helper()
	root := moduleRoot()
	bin := os.Getenv("STOCKADE_GETH")
	switch {
	case bin == "":
		bin = filepath.Join(root, "bin", "tools", "geth")
	case !filepath.IsAbs(bin) && filepath.Base(bin) != bin:
		bin = filepath.Join(root, bin)
	}
	path, err := exec.LookPath(bin)
	if err == nil {
		path, err = filepath.Abs(path)
	}
	if err != nil {
		testenv.Unavailable(t, "geth not found (%v): run `make geth` (bin/tools/geth) or set STOCKADE_GETH", err)
	}
	return path
}

// moduleRoot is the nearest directory up from the working directory (a
// test's package) with a go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
