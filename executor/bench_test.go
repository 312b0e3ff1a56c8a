package executor

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/stockade-hpc/stockade/executor/ocitest"
	"github.com/stockade-hpc/stockade/internal/testenv"
)

const benchScript = "#!/bin/sh\necho x\n"

// benchEnv is a busybox image, already unpacked in its cache.
type benchEnv struct {
	img, cache string
	ci         *cachedImage
	bareDir    string
	bareSetup  *containerSetup
}

func newBenchEnv(b *testing.B) *benchEnv {
	testenv.RequireRoot(b)
	e := &benchEnv{img: filepath.Join(userDir(b), "busybox"), cache: filepath.Join(userDir(b), "cache")}
	if err := ocitest.BuildBusybox(e.img); err != nil {
		b.Fatal(err)
	}
	var err error
	if e.ci, err = prepareImage(e.img, e.cache); err != nil {
		b.Fatal(err)
	}
	e.bareDir = userDir(b)
	script := filepath.Join(e.bareDir, "script")
	if err := os.WriteFile(script, []byte(benchScript), 0o500); err != nil {
		b.Fatal(err)
	}
	os.Chown(script, nobody, nobody)
	host, _ := os.Hostname()
	env := mergeImageEnv(e.ci.Config.Env, []string{"PATH=/usr/bin:/bin", "HOME=/tmp"})
	e.bareSetup = &containerSetup{Rootfs: e.ci.Rootfs, Image: true, Cwd: "/", Env: env, ScriptSource: script, Hostname: host}
	return e
}

// bare starts the job's container in this process, as the shim does but
// without the shim: config, Create, Run. It returns the time until the job's
// first output byte.
func (e *benchEnv) bare(b *testing.B) time.Duration {
	spec := Spec{JobID: uint64(os.Getpid())*1000 + nextJobID.Add(1), UID: nobody, GID: nobody, Script: benchScript}
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	t0 := time.Now()
	sp, err := ociSpec(&spec, e.bareSetup)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := libcontainerConfig(&spec, sp)
	if err != nil {
		b.Fatal(err)
	}
	c, err := libcontainer.Create(filepath.Join(e.bareDir, "state"), spec.containerID(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	p := &libcontainer.Process{Args: sp.Process.Args, Env: e.bareSetup.Env, UID: nobody, GID: nobody, Cwd: "/", Stdout: w, Stderr: w, Init: true}
	if err := c.Run(p); err != nil {
		b.Fatal(err)
	}
	w.Close()
	firstByte(b, r)
	d := time.Since(t0)
	p.Wait()
	c.Destroy()
	return d
}

// full starts the same job through Launch (image "" = host file system),
// its output going to a FIFO, and returns the time until the first byte.
func (e *benchEnv) full(b *testing.B, image string) time.Duration {
	spec := baseSpec(b, benchScript)
	spec.Image, spec.ImageCacheDir = image, e.cache
	out := filepath.Dir(spec.Stdout)
	fifo := filepath.Join(out, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	os.Chown(fifo, nobody, nobody)
	// O_RDWR: a read end that also holds a writer never sees EOF before the
	// job opens the FIFO.
	r, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	spec.Stdout = fifo
	dir := filepath.Join(out, "job")
	t0 := time.Now()
	if _, err := Launch(dir, spec); err != nil {
		b.Fatal(err)
	}
	firstByte(b, r)
	d := time.Since(t0)
	awaitResult(b, dir, 30*time.Second)
	if err := Remove(dir); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(out)
	return d
}

func firstByte(b *testing.B, r io.Reader) {
	var buf [1]byte
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		b.Fatalf("reading the job's first byte: %v", err)
	}
}

// BenchmarkStartLatency measures the time from "start this job" to the
// job's first output byte, for the same busybox image container:
//
//   - bare: libcontainer in this process (config, Create, Run), stdout a
//     pipe;
//   - full: Launch (spec file, shim process, user-identity open of the
//     output, container), stdout a FIFO;
//   - fullHost: Launch on the host file system (adds the rbind of "/");
//   - interleaved: bare and full alternately, reporting both and their
//     ratio, which stays meaningful on a busy machine.
//
// The target is full ≤ 1.5 × bare. Teardown is not timed.
func BenchmarkStartLatency(b *testing.B) {
	e := newBenchEnv(b)
	run := func(f func(b *testing.B) time.Duration) func(b *testing.B) {
		return func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += f(b)
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/op")
		}
	}
	b.Run("bare", run(e.bare))
	b.Run("full", run(func(b *testing.B) time.Duration { return e.full(b, e.img) }))
	b.Run("fullHost", run(func(b *testing.B) time.Duration { return e.full(b, "") }))
	b.Run("interleaved", func(b *testing.B) {
		var bare, full time.Duration
		for i := 0; i < b.N; i++ {
			bare += e.bare(b)
			full += e.full(b, e.img)
		}
		n := float64(b.N)
		b.ReportMetric(float64(bare.Microseconds())/1000/n, "bare-ms/op")
		b.ReportMetric(float64(full.Microseconds())/1000/n, "full-ms/op")
		b.ReportMetric(float64(full)/float64(bare), "full/bare")
		b.ReportMetric(float64(bare+full)/n, "ns/op")
	})
}
