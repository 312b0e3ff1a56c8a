package chain

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/accounting/chain/chaintest"
)

// startDev starts a dev chain on dir with the test's geth.
func startDev(t *testing.T, geth, dir string) *DevChain {
	t.Helper()
	d, err := StartDevChain(context.Background(), DevConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0", Geth: geth})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", d.URL())
	}
	t.Cleanup(func() {
		d.Close()
		if t.Failed() {
			b, _ := os.ReadFile(d.LogFile())
			t.Logf("%s:\n%s", d.LogFile(), b)
		}
	})
	return d
}

// TestDevChainPersists: anchors, the dev key and the contract survive a
// restart on the same data directory.
func TestDevChainPersists(t *testing.T) {
	geth := chaintest.Geth(t)
	ctx := context.Background()
	dir := t.TempDir()
	roots := [][32]byte{rootOfRecords(10), rootOfRecords(20)}

	t0 := time.Now()
	d := startDev(t, geth, dir)
	t.Logf("first start (key import included): %v", time.Since(t0).Round(time.Millisecond))
	for _, f := range []string{d.KeyFile(), filepath.Join(dir, devPasswordFile)} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	account := d.Account()
	contract, err := d.EnsureContract(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Dial(ctx, d.Config())
	if err != nil {
		t.Fatal(err)
	}
	var receipts []AnchorReceipt
	for i, root := range roots {
		rc, err := a.Anchor(ctx, uint64(i+1), root)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("epoch %d: block %d, %d gas", i+1, rc.BlockNumber, rc.GasUsed)
		receipts = append(receipts, rc)
	}
	a.Close()
	t0 = time.Now()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop: %v", time.Since(t0).Round(time.Millisecond))
	if d.Err() != nil {
		t.Errorf("Err after Close: %v", d.Err())
	}

	t0 = time.Now()
	d = startDev(t, geth, dir)
	t.Logf("restart: %v", time.Since(t0).Round(time.Millisecond))
	if d.Account() != account {
		t.Fatalf("dev account changed: %s, was %s", d.Account(), account)
	}
	if c, err := d.EnsureContract(ctx); err != nil || c != contract {
		t.Fatalf("EnsureContract after restart = %s, %v; want %s", c, err, contract)
	}
	a, err = Dial(ctx, d.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	requireAnchors(t, ctx, a, roots, receipts)
	if _, err := a.Anchor(ctx, 3, rootOfRecords(30)); err != nil {
		t.Fatalf("anchoring after restart: %v", err)
	}
	t.Logf("data directory: %d kB on disk", diskUsage(dir)>>10)
	if du := diskUsage(dir); du > 64<<20 {
		t.Errorf("data directory takes %d MB", du>>20)
	}
}

// TestChainCommand runs `chain --dev` twice on one directory: the second
// run reuses the contract the first deployed.
func TestChainCommand(t *testing.T) {
	geth := chaintest.Geth(t)
	dir := t.TempDir()
	run := func() map[string]string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pr, pw := io.Pipe()
		cmd := NewCommand()
		cmd.SetArgs([]string{"--dev", "--datadir", dir, "--http", "127.0.0.1:0", "--geth", geth})
		cmd.SetOut(pw)
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()
		out := map[string]string{}
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			out[k] = strings.TrimSpace(v)
			if k == "account" {
				break
			}
		}
		cancel()
		go io.Copy(io.Discard, pr)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(40 * time.Second):
			t.Fatal("chain command did not stop")
		}
		return out
	}
	first := run()
	if !strings.HasPrefix(first["rpc"], "http://127.0.0.1:") || first["chain id"] != "1337" || len(first["contract"]) != 42 {
		t.Fatalf("output %q", first)
	}
	if second := run(); second["contract"] != first["contract"] {
		t.Fatalf("restart deployed a new contract: %s, was %s", second["contract"], first["contract"])
	}
}

// TestDevChainSurvivesKill kills geth (SIGKILL) right after it mined two
// anchors, with no chance to shut down, and restarts it on its directory.
func TestDevChainSurvivesKill(t *testing.T) {
	geth := chaintest.Geth(t)
	ctx := context.Background()
	dir := t.TempDir()
	d := startDev(t, geth, dir)
	if _, err := d.EnsureContract(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := Dial(ctx, d.Config())
	if err != nil {
		t.Fatal(err)
	}
	for e := uint64(1); e <= 2; e++ {
		if _, err := a.Anchor(ctx, e, rootOfRecords(int(e))); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("geth did not die of SIGKILL")
	}
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Err after SIGKILL = %v", err)
	}

	d = startDev(t, geth, dir)
	a, err = Dial(ctx, d.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if n, err := a.LastEpoch(ctx); err != nil || n != 2 {
		t.Fatalf("LastEpoch after kill = %d, %v", n, err)
	}
	for e := uint64(1); e <= 2; e++ {
		if root, _, err := a.RootOf(ctx, e); err != nil || root != rootOfRecords(int(e)) {
			t.Fatalf("RootOf(%d) after kill = %x, %v", e, root, err)
		}
	}
}

// TestDevChainDiesWithParent: a process running a dev chain is killed
// outright (SIGKILL, as a crashed controller); its geth stops too (its
// parent-death signal), releasing the directory for the next start.
func TestDevChainDiesWithParent(t *testing.T) {
	geth := chaintest.Geth(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "STOCKADE_DEVCHAIN_CHILD="+dir, "STOCKADE_GETH="+geth)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	pid := 0
	for pid == 0 && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "GETH "); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid == 0 {
		t.Fatal("child exited before starting geth")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	cmd.Wait()
	deadline := time.Now().Add(devStopTimeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("geth (pid %d) still runs %v after its parent was killed", pid, devStopTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := startDev(t, geth, dir)
	if _, err := d.EnsureContract(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// alive: pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// TestDevChainRefusesOtherKeystore: a data directory whose keystore holds
// an account other than the dev key's is refused, before geth runs.
func TestDevChainRefusesOtherKeystore(t *testing.T) {
	dir := t.TempDir()
	if _, err := GenerateKeyFile(filepath.Join(dir, devKeyFile)); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "keystore"), 0o700)
	other := "00000000000000000000000000000000000000aa"
	if err := os.WriteFile(filepath.Join(dir, "keystore", "UTC--2026-01-01T00-00-00.000000000Z--"+other),
		[]byte(`{"address":"`+other+`","crypto":{},"version":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := StartDevChain(context.Background(), DevConfig{DataDir: dir, Geth: "/bin/false"})
	if err == nil || !strings.Contains(err.Error(), "holds account 0x00000000000000000000000000000000000000AA") {
		t.Fatalf("StartDevChain = %v", err)
	}
	os.Remove(filepath.Join(dir, devKeyFile))
	_, err = StartDevChain(context.Background(), DevConfig{DataDir: dir, Geth: "/bin/false"})
	if err == nil || !strings.Contains(err.Error(), "has a keystore") || exists(filepath.Join(dir, devKeyFile)) {
		t.Fatalf("StartDevChain without dev.key = %v", err)
	}
	key := filepath.Join(t.TempDir(), "k")
	if _, err := GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	if err := SeedDevKey(dir, key); err == nil || !strings.Contains(err.Error(), "holds account") {
		t.Fatalf("SeedDevKey = %v", err)
	}
}

// TestFindGeth: $STOCKADE_GETH, then geth and tools/geth beside the
// executable, then $PATH; nothing found says what to do.
func TestFindGeth(t *testing.T) {
	mk := func(path string) string {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	env := mk(filepath.Join(t.TempDir(), "env-geth"))
	exe := t.TempDir()
	tools := mk(filepath.Join(exe, "tools", "geth"))
	pathDir := t.TempDir()
	onPath := mk(filepath.Join(pathDir, "geth"))
	t.Setenv("PATH", pathDir)
	for _, tc := range []struct {
		env, exeDir, want string
	}{
		{env, exe, env},
		{"", exe, tools},
		{"", t.TempDir(), onPath},
	} {
		if got, err := findGeth(tc.env, tc.exeDir); err != nil || got != tc.want {
			t.Errorf("findGeth(%q, %q) = %q, %v; want %q", tc.env, tc.exeDir, got, err, tc.want)
		}
	}
	beside := mk(filepath.Join(exe, "geth"))
	if got, _ := findGeth("", exe); got != beside {
		t.Errorf("with geth and tools/geth beside the executable: %q, want %q", got, beside)
	}
	if _, err := findGeth(filepath.Join(exe, "nothing"), exe); err == nil || !strings.Contains(err.Error(), EnvGeth) {
		t.Errorf("a missing $%s: %v", EnvGeth, err)
	}
	t.Setenv("PATH", t.TempDir())
	_, err := findGeth("", t.TempDir())
	if !errors.Is(err, ErrGethNotFound) || !strings.Contains(err.Error(), "make geth") {
		t.Errorf("nothing: %v", err)
	}
	_, err = StartDevChain(context.Background(), DevConfig{DataDir: t.TempDir(), Geth: filepath.Join(exe, "nothing")})
	if err == nil || !strings.Contains(err.Error(), "geth") {
		t.Errorf("StartDevChain with a missing geth: %v", err)
	}
}

// TestDevChainGethFails: geth exiting at once is an error with its last
// output.
func TestDevChainGethFails(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "geth")
	os.WriteFile(fake, []byte("#!/bin/sh\nif [ \"$1\" = account ]; then\n  mkdir -p \"$4/keystore\"\n"+
		"  printf '{\"address\":\"%s\"}' \"$(cat \"$4/addr\")\" >\"$4/keystore/k\"\n  exit 0\nfi\necho 'Fatal: something broke' >&2\nexit 1\n"), 0o755)
	dir := t.TempDir()
	addr, err := GenerateKeyFile(filepath.Join(dir, devKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "addr"), []byte(strings.ToLower(addr.Hex()[2:])), 0o644)
	_, err = StartDevChain(context.Background(), DevConfig{DataDir: dir, Geth: fake})
	if err == nil || !strings.Contains(err.Error(), "Fatal: something broke") {
		t.Fatalf("StartDevChain = %v", err)
	}
	t.Log(err)
}

// TestMain runs the test binary as TestDevChainDiesWithParent's child
// when asked to: it starts a dev chain, prints geth's pid and waits to be
// killed.
func TestMain(m *testing.M) {
	dir := os.Getenv("STOCKADE_DEVCHAIN_CHILD")
	if dir == "" {
		os.Exit(m.Run())
	}
	d, err := StartDevChain(context.Background(), DevConfig{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dev chain child:", err)
		os.Exit(1)
	}
	fmt.Printf("GETH %d\n", d.cmd.Process.Pid)
	select {}
}
