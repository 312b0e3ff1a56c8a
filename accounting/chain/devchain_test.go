package chain

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevChainPersists: anchors, the dev key and the contract survive a
// restart on the same data directory.
func TestDevChainPersists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	start := func() *DevChain {
		t.Helper()
		d, err := StartDevChain(ctx, DevConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(d.URL(), "http://127.0.0.1:") {
			t.Fatalf("URL %q", d.URL())
		}
		return d
	}
	roots := [][32]byte{rootOfRecords(10), rootOfRecords(20)}

	d := start()
	if fi, err := os.Stat(d.KeyFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev key: %v %v", fi.Mode(), err)
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
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = start()
	defer d.Close()
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
	if n, err := a.LastEpoch(ctx); err != nil || n != 2 {
		t.Fatalf("LastEpoch after restart = %d, %v", n, err)
	}
	for i, want := range roots {
		root, rc, err := a.RootOf(ctx, uint64(i+1))
		if err != nil || root != want || rc != receipts[i] {
			t.Fatalf("RootOf(%d) after restart = %x %+v %v", i+1, root, rc, err)
		}
	}
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
	dir := t.TempDir()
	run := func() map[string]string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pr, pw := io.Pipe()
		cmd := NewCommand()
		cmd.SetArgs([]string{"--dev", "--datadir", dir, "--http", "127.0.0.1:0"})
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
		case <-time.After(30 * time.Second):
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

// TestDevChainSurvivesKill kills a process running a dev chain right after
// it anchored, with no chance to shut down, and reopens its directory.
func TestDevChainSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "STOCKADE_DEVCHAIN_CHILD="+dir)
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
	ready := false
	for !ready && sc.Scan() {
		ready = strings.HasPrefix(sc.Text(), "ANCHORED")
	}
	if !ready {
		t.Fatal("child exited before anchoring")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	cmd.Wait()

	ctx := context.Background()
	d, err := StartDevChain(ctx, DevConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := Dial(ctx, d.Config())
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

// TestMain runs the test binary as TestDevChainSurvivesKill's child when
// asked to: it anchors two epochs, says so, and waits to be killed.
func TestMain(m *testing.M) {
	dir := os.Getenv("STOCKADE_DEVCHAIN_CHILD")
	if dir == "" {
		os.Exit(m.Run())
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "dev chain child:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	d, err := StartDevChain(ctx, DevConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		fail(err)
	}
	if _, err := d.EnsureContract(ctx); err != nil {
		fail(err)
	}
	a, err := Dial(ctx, d.Config())
	if err != nil {
		fail(err)
	}
	for e := uint64(1); e <= 2; e++ {
		if _, err := a.Anchor(ctx, e, rootOfRecords(int(e))); err != nil {
			fail(err)
		}
	}
	fmt.Println("ANCHORED")
	select {}
}
