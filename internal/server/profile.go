package server

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
)

// CPUProfileEnv names a directory that turns on CPU profiling by signal,
// for benchmarks (bench/BenchmarkSubmitStorm): SIGUSR1 starts a CPU
// profile of the controller, the next SIGUSR1 stops it and writes
// DIR/cpu-<id>-<n>.pprof (renamed into place once complete). Each signal
// also writes the allocations so far, DIR/allocs-<id>-<n>-start.pprof and
// -end.pprof: what the profiled span allocated is their difference
// (go tool pprof -sample_index=alloc_space -diff_base START END). Unset,
// the default, the controller neither profiles nor handles SIGUSR1.
const CPUProfileEnv = "STOCKADE_CPU_PROFILE"

// profileOnSignal serves CPUProfileEnv until the server stops.
func (s *Server) profileOnSignal() {
	dir := os.Getenv(CPUProfileEnv)
	if dir == "" {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer signal.Stop(sig)
		var (
			f    *os.File
			path string
			n    int
		)
		allocs := func(suffix string) {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("allocs-%s-%d-%s.pprof", s.id, n, suffix)))
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				s.log.Warn("writing the allocation profile", "err", err)
			}
		}
		stop := func() {
			allocs("end")
			pprof.StopCPUProfile()
			err := f.Close()
			if err == nil {
				err = os.Rename(f.Name(), path)
			}
			if err != nil {
				s.log.Warn("writing the CPU profile", "err", err)
			} else {
				s.log.Info("CPU profile written", "file", path)
			}
			f = nil
		}
		for {
			select {
			case <-s.ctx.Done():
				if f != nil {
					stop()
				}
				return
			case <-sig:
			}
			if f != nil {
				stop()
				continue
			}
			n++
			allocs("start")
			path = filepath.Join(dir, fmt.Sprintf("cpu-%s-%d.pprof", s.id, n))
			var err error
			if f, err = os.Create(path + ".tmp"); err != nil {
				s.log.Warn("starting a CPU profile", "err", err)
				continue
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				s.log.Warn("starting a CPU profile", "err", err)
				f.Close()
				os.Remove(f.Name())
				f = nil
				continue
			}
			s.log.Info("CPU profile started", "file", path)
		}
	}()
}
