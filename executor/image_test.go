package executor

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stockade-hpc/stockade/executor/ocitest"
	"github.com/stockade-hpc/stockade/internal/testenv"
)

// The three image forms unpack to the same root file system.
func TestPrepareImageFormats(t *testing.T) {
	testenv.RequireRoot(t) // the unpacked files keep their owners
	t.Parallel()
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	if err := ocitest.BuildBusybox(lay); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pickManifest(idx)
	if err != nil {
		t.Fatal(err)
	}
	img, err := pm.image()
	if err != nil {
		t.Fatal(err)
	}
	docker := filepath.Join(dir, "docker.tar")
	if err := tarball.WriteToFile(docker, name.MustParseReference("busybox:test").(name.Tag), img); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "oci.tar")
	if err := tarDir(lay, archive); err != nil {
		t.Fatal(err)
	}

	cases := []struct{ name, image string }{
		{"layout", lay},
		{"ociArchive", archive},
		{"dockerSave", docker},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			for round := 0; round < 2; round++ { // the second one hits the cache
				ci, err := prepareImage(tc.image, cache)
				if err != nil {
					t.Fatal(err)
				}
				if fi, err := os.Stat(filepath.Join(ci.Rootfs, "bin/busybox")); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("bin/busybox: %v %v", fi, err)
				}
				if l, err := os.Readlink(filepath.Join(ci.Rootfs, "bin/sh")); err != nil || l != "busybox" {
					t.Errorf("bin/sh → %q, %v", l, err)
				}
				if fi, err := os.Stat(filepath.Join(ci.Rootfs, "tmp")); err != nil || fi.Mode()&fs.ModeSticky == 0 {
					t.Errorf("tmp: %v %v", fi, err)
				}
				if strings.Join(ci.Config.Env, " ") != "PATH=/bin" {
					t.Errorf("env %v", ci.Config.Env)
				}
			}
			ents, _ := os.ReadDir(cache)
			if len(ents) != 1 {
				t.Errorf("cache holds %d entries, want 1 (no scratch left over)", len(ents))
			}
		})
	}
}

func tarDir(src, dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(src)); err != nil {
		return err
	}
	return tw.Close()
}

// Whiteouts, opaque directories and links across two layers.
func TestExtractLayers(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	type entry struct {
		name, body, link string
		typ              byte
	}
	layer := func(es ...entry) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range es {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, e.body)
		}
		tw.Close()
		return buf.Bytes()
	}
	lower := layer(
		entry{name: "a/", typ: tar.TypeDir},
		entry{name: "a/keep", body: "v1", typ: tar.TypeReg},
		entry{name: "a/gone", body: "x", typ: tar.TypeReg},
		entry{name: "a/same", body: "same", typ: tar.TypeReg},
		entry{name: "a/hard", link: "a/same", typ: tar.TypeLink},
		entry{name: "d/", typ: tar.TypeDir},
		entry{name: "d/old", body: "old", typ: tar.TypeReg},
		entry{name: "link", link: "a/keep", typ: tar.TypeSymlink},
	)
	upper := layer(
		entry{name: "a/", typ: tar.TypeDir},
		entry{name: "a/keep", body: "v2", typ: tar.TypeReg},
		entry{name: "a/.wh.gone", typ: tar.TypeReg},
		entry{name: "d/", typ: tar.TypeDir},
		entry{name: "d/.wh..wh..opq", typ: tar.TypeReg},
		entry{name: "d/new", body: "new", typ: tar.TypeReg},
		entry{name: "e/f/g", body: "deep", typ: tar.TypeReg}, // no parent entries
	)
	var layers []v1.Layer
	for _, data := range [][]byte{lower, upper} {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := extractRootfs(img, root); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // path → content; "" = must not exist
		"a/keep": "v2",
		"a/gone": "",
		"a/same": "same",
		"a/hard": "same",
		"d/old":  "",
		"d/new":  "new",
		"link":   "v2",
		"e/f/g":  "deep",
	}
	for p, w := range want {
		b, err := os.ReadFile(filepath.Join(root, p))
		switch {
		case w == "" && err == nil:
			t.Errorf("%s exists, want it whited out", p)
		case w != "" && (err != nil || string(b) != w):
			t.Errorf("%s = %q, %v; want %q", p, b, err, w)
		}
	}
	if fi, err := os.Lstat(filepath.Join(root, "link")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("link is not a symlink: %v %v", fi, err)
	}
	var a, h syscallStat
	if statIno(filepath.Join(root, "a/same"), &a) != nil || statIno(filepath.Join(root, "a/hard"), &h) != nil || a.ino != h.ino {
		t.Errorf("a/hard is not a hard link of a/same")
	}
	for _, mp := range []string{"proc", "sys", "dev", "tmp"} {
		if fi, err := os.Stat(filepath.Join(root, mp)); err != nil || !fi.IsDir() {
			t.Errorf("mount point %s: %v", mp, err)
		}
	}
}

type syscallStat struct{ ino uint64 }

func statIno(p string, s *syscallStat) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	s.ino = fi.Sys().(*syscall.Stat_t).Ino
	return nil
}
