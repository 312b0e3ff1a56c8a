package executor

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// cachedImage is one unpacked image in the cache.
type cachedImage struct {
	Rootfs string
	Config v1.Config
}

// prepareImage returns the unpacked root file system of image (an OCI image
// layout directory, an OCI archive or a docker-save tarball), unpacking it
// into cacheDir/<digest> first if it is not there yet. An OCI image is keyed
// by its manifest digest; a docker-save tarball carries no manifest digest
// (go-containerregistry would have to gzip every layer to invent one), so it
// is keyed by its config digest, the image ID docker uses. Entries appear by
// an atomic rename, so concurrent shims unpacking the same image are safe:
// the loser throws its copy away.
func prepareImage(image, cacheDir string) (*cachedImage, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	src, err := openImage(image, cacheDir)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	defer src.cleanup()
	entry := filepath.Join(cacheDir, src.key.Algorithm+"-"+src.key.Hex)
	if ci, err := loadCached(entry); err == nil {
		return ci, nil
	}
	img, err := src.image()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", image, err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".unpack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // a plain directory tree: nothing is ever mounted in it
	if err := extractRootfs(img, filepath.Join(tmp, "rootfs")); err != nil {
		return nil, fmt.Errorf("image %s: unpack: %w", image, err)
	}
	data, err := json.Marshal(cfg.Config)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), data, 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, entry); err != nil {
		if ci, lerr := loadCached(entry); lerr == nil {
			return ci, nil // another shim won the race
		}
		return nil, err
	}
	return loadCached(entry)
}

func loadCached(entry string) (*cachedImage, error) {
	var cfg v1.Config
	if err := readJSON(filepath.Join(entry, "config.json"), &cfg); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(entry, "rootfs")
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("cache entry %s has no rootfs", entry)
	}
	return &cachedImage{Rootfs: rootfs, Config: cfg}, nil
}

// imageSource is an image whose cache key is known; image() reads it.
type imageSource struct {
	key     v1.Hash
	image   func() (v1.Image, error)
	cleanup func()
}

func openImage(image, cacheDir string) (*imageSource, error) {
	fi, err := os.Stat(image)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		idx, err := layout.ImageIndexFromPath(image)
		if err != nil {
			return nil, err
		}
		d, err := pickManifest(idx)
		if err != nil {
			return nil, err
		}
		return &imageSource{key: d.key, image: d.image, cleanup: func() {}}, nil
	}
	names, err := tarNames(image)
	if err != nil {
		return nil, err
	}
	switch {
	case names["manifest.json"]:
		img, err := tarball.ImageFromPath(image, nil)
		if err != nil {
			return nil, err
		}
		key, err := img.ConfigName()
		if err != nil {
			return nil, err
		}
		return &imageSource{key: key, image: func() (v1.Image, error) { return img, nil }, cleanup: func() {}}, nil
	case names["oci-layout"] && names["index.json"]:
		// The key comes from index.json alone; the blobs are only unpacked
		// (into a scratch layout) on a cache miss.
		data, err := readTarFile(image, "index.json")
		if err != nil {
			return nil, err
		}
		var im v1.IndexManifest
		if err := json.Unmarshal(data, &im); err != nil {
			return nil, fmt.Errorf("index.json: %w", err)
		}
		desc, err := pickDescriptor(im.Manifests)
		if err != nil {
			return nil, err
		}
		var scratch string
		src := &imageSource{key: desc.Digest, cleanup: func() {
			if scratch != "" {
				os.RemoveAll(scratch)
			}
		}}
		src.image = func() (v1.Image, error) {
			var err error
			if scratch, err = os.MkdirTemp(cacheDir, ".archive-"); err != nil {
				return nil, err
			}
			if err := untar(image, scratch); err != nil {
				return nil, err
			}
			idx, err := layout.ImageIndexFromPath(scratch)
			if err != nil {
				return nil, err
			}
			d, err := pickManifest(idx)
			if err != nil {
				return nil, err
			}
			return d.image()
		}
		return src, nil
	}
	return nil, errors.New("neither an OCI image layout, an OCI archive nor a docker-save tarball")
}

type pickedManifest struct {
	key   v1.Hash
	image func() (v1.Image, error)
}

// pickManifest finds the image for this platform in an index, descending
// into nested indexes.
func pickManifest(idx v1.ImageIndex) (*pickedManifest, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	d, err := pickDescriptor(im.Manifests)
	if err != nil {
		return nil, err
	}
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return pickManifest(child)
	}
	return &pickedManifest{key: d.Digest, image: func() (v1.Image, error) { return idx.Image(d.Digest) }}, nil
}

func pickDescriptor(ds []v1.Descriptor) (*v1.Descriptor, error) {
	for i := range ds {
		d := &ds[i]
		if d.Platform != nil && (d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH) {
			continue // other platforms, attestation manifests (unknown/unknown)
		}
		if d.MediaType.IsImage() || d.MediaType.IsIndex() {
			return d, nil
		}
	}
	return nil, fmt.Errorf("no linux/%s image in the index", runtime.GOARCH)
}

func tarNames(file string) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar file: %w", err)
		}
		names[path.Clean(strings.TrimPrefix(h.Name, "./"))] = true
	}
}

func readTarFile(file, name string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s not in %s", name, file)
		}
		if err != nil {
			return nil, err
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) == name {
			return io.ReadAll(io.LimitReader(tr, 64<<20))
		}
	}
}

// untar unpacks the regular files and directories of an archive (an OCI
// layout) into dir; os.Root keeps every entry inside dir.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := cleanTarName(h.Name)
		if name == "" {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				return err
			}
			out, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// cleanTarName makes an entry name relative and free of "..": "" for the
// root itself.
func cleanTarName(name string) string {
	name = path.Clean("/" + name)
	if name == "/" {
		return ""
	}
	return name[1:]
}

// extractRootfs writes the flattened file system of img into dir (which
// must not exist). mutate.Extract applies whiteouts and emits each path once,
// upper layers first, so a path can already exist only as a directory made
// for a child that came earlier; its own entry then just sets its metadata.
// Hard links are made last because their targets may come later. Device
// nodes and FIFOs are skipped: the container gets its own /dev.
func extractRootfs(img v1.Image, dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	type hardlink struct{ target, name string }
	var links []hardlink
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := cleanTarName(h.Name)
		if name == "" {
			continue
		}
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		mode := h.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := root.Lstat(name); err == nil && !fi.IsDir() {
				continue
			} else if err != nil {
				if err := root.Mkdir(name, 0o700); err != nil {
					return err
				}
			}
			if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
				return err
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if err == nil {
				err = f.Chown(h.Uid, h.Gid)
			}
			if err == nil {
				err = f.Chmod(mode) // after chown, which clears set-id bits
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := root.Chtimes(name, h.ModTime, h.ModTime); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				if errors.Is(err, fs.ErrExist) {
					continue
				}
				return err
			}
			if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
				return err
			}
		case tar.TypeLink:
			links = append(links, hardlink{cleanTarName(h.Linkname), name})
		}
	}
	for _, l := range links {
		if l.target == "" {
			continue
		}
		if err := root.Link(l.target, l.name); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("hard link %s: %w", l.name, err)
		}
	}
	// Mount points the container needs, made now so that runc never writes
	// into the shared, read-only rootfs.
	for _, mp := range []struct {
		name string
		mode fs.FileMode
	}{{"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"tmp", fs.ModeSticky | 0o777}} {
		if _, err := root.Lstat(mp.name); errors.Is(err, fs.ErrNotExist) {
			if err := root.Mkdir(mp.name, 0o755); err != nil {
				return err
			}
			if err := root.Chmod(mp.name, mp.mode); err != nil {
				return err
			}
		}
	}
	return nil
}
