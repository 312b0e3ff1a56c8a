package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stockade-hpc/stockade/internal/testenv"
)

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"normal", "MemFree:  100 kB\nMemTotal:       16384000 kB\nSwapTotal: 0 kB\n", 16000, false},
		{"missing", "MemFree: 100 kB\n", 0, true},
		{"garbage", "MemTotal: lots kB\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemTotal([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("got %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestMemReserve(t *testing.T) {
	tests := []struct{ total, want int64 }{
		{1024, 256},         // small node: the floor
		{64 * 1024, 3276},   // 5%
		{1024 * 1024, 4096}, // big node: the cap
		{16 * 1024, 16 * 1024 / 20},
	}
	for _, tc := range tests {
		if got := memReserve(tc.total); got != tc.want {
			t.Errorf("memReserve(%d) = %d, want %d", tc.total, got, tc.want)
		}
	}
}

func TestGPUDevices(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"nvidia10", "nvidia2", "nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-caps", "null"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{filepath.Join(dir, "nvidia0"), filepath.Join(dir, "nvidia2"), filepath.Join(dir, "nvidia10")}
	if got := gpuDevices(dir); !reflect.DeepEqual(got, want) {
		t.Errorf("gpuDevices = %v, want %v", got, want)
	}
	wantCtl := []string{filepath.Join(dir, "nvidiactl"), filepath.Join(dir, "nvidia-uvm")}
	if got := gpuControlDevices(dir); !reflect.DeepEqual(got, wantCtl) {
		t.Errorf("gpuControlDevices = %v, want %v", got, wantCtl)
	}
	if got := gpuDevices(filepath.Join(dir, "missing")); got != nil {
		t.Errorf("missing dir: %v", got)
	}
}

func TestDetectInventory(t *testing.T) {
	all := len(affinityCPUs())
	if all == 0 {
		testenv.Unavailable(t, "no CPU affinity information")
	}
	tests := []struct {
		name string
		opts Options
		pin  bool
	}{
		{"detected CPUs are pinned", Options{MemoryMB: 100}, true},
		{"--cpus equal to the affinity set pins", Options{CPUs: all, MemoryMB: 100}, true},
		{"oversubscribed does not pin", Options{CPUs: all + 8, MemoryMB: 100}, false},
		{"a share of the host does not pin", Options{CPUs: all - 1, MemoryMB: 100}, all == 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := detectInventory(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if (inv.CPUIDs != nil) != tc.pin {
				t.Errorf("pin ids %v, want pinning %v", inv.CPUIDs, tc.pin)
			}
			if tc.opts.CPUs > 0 && inv.CPUs != tc.opts.CPUs || inv.CPUs <= 0 {
				t.Errorf("cpus %d", inv.CPUs)
			}
			if inv.MemoryMB != 100 {
				t.Errorf("memory %d", inv.MemoryMB)
			}
		})
	}
	inv, err := detectInventory(Options{CPUs: 1, GPUs: 3, Features: []string{"ib"}})
	if err != nil {
		t.Fatal(err)
	}
	if inv.GPUs != 3 || !reflect.DeepEqual(inv.Features, []string{"ib"}) || inv.MemoryMB <= 0 {
		t.Errorf("inventory %+v", inv)
	}
}
