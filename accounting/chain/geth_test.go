package chain

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/stockade-hpc/stockade/accounting/chain/chaintest"
)

// TestGeth anchors on a real `geth --dev` (chaintest.Geth: STOCKADE_GETH or
// bin/tools/geth, from `make geth`) run directly, funding a key of its own
// from geth's dev account, kills it, restarts it on the same data
// directory and reads the anchors back.
func TestGeth(t *testing.T) {
	bin := chaintest.Geth(t)
	ctx := context.Background()
	dir := t.TempDir()

	url, stop := startGeth(t, bin, dir)
	key := filepath.Join(t.TempDir(), "anchor.key")
	account, err := GenerateKeyFile(key)
	if err != nil {
		t.Fatal(err)
	}
	fundFromDevAccount(t, url, account)

	a, err := Dial(ctx, Config{RPCURL: url, ChainID: DevChainID, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	contract, err := a.Deploy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots := [][32]byte{rootOfRecords(3), rootOfRecords(4)}
	var receipts []AnchorReceipt
	for i, root := range roots {
		rc, err := a.Anchor(ctx, uint64(i+1), root)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("geth: epoch %d in block %d, %d gas", i+1, rc.BlockNumber, rc.GasUsed)
		receipts = append(receipts, rc)
	}
	if rc, err := a.Anchor(ctx, 2, roots[1]); err != nil || rc != receipts[1] {
		t.Fatalf("retried Anchor(2) = %+v, %v", rc, err)
	}
	a.Close()
	stop(syscall.SIGKILL)
	t.Logf("data directory after first run: %d kB on disk", diskUsage(dir)>>10)

	url, stop = startGeth(t, bin, dir)
	defer stop(os.Interrupt)
	a, err = Dial(ctx, Config{RPCURL: url, ChainID: DevChainID, KeyFile: key, Contract: contract.Hex()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	requireAnchors(t, ctx, a, roots, receipts)
	if _, err := a.Anchor(ctx, 3, rootOfRecords(5)); err != nil {
		t.Fatal(err)
	}
}

// startGeth runs geth --dev on dir and waits for its JSON-RPC.
func startGeth(t *testing.T, bin, dir string) (url string, stop func(os.Signal)) {
	t.Helper()
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--dev", "--datadir", dir,
		"--http", "--http.addr", "127.0.0.1", "--http.port", port, "--http.api", "eth,net,web3",
		"--ipcdisable", "--nodiscover", "--maxpeers", "0",
		// As StartDevChain (see there): a killed geth keeps every block.
		"--state.scheme", "hash", "--gcmode", "archive", "--db.engine", "leveldb", "--cache", "64",
		"--verbosity", "2")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop = func(sig os.Signal) {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
	}
	t.Cleanup(func() {
		stop(os.Interrupt)
		if t.Failed() {
			t.Logf("geth output:\n%s", logs.String())
		}
	})
	url = "http://127.0.0.1:" + port
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := ethclient.Dial(url)
		if err == nil {
			_, err = c.ChainID(context.Background())
			c.Close()
			if err == nil {
				return url, stop
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("geth exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("geth not answering on %s: %v\n%s", url, err, logs.String())
		}
	}
}

// fundFromDevAccount sends ether from geth's unlocked dev account, which
// holds the genesis funds; the test anchors with a key of its own.
func fundFromDevAccount(t *testing.T, url string, to common.Address) {
	t.Helper()
	ctx := context.Background()
	c, err := ethclient.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var accounts []common.Address
	if err := c.Client().CallContext(ctx, &accounts, "eth_accounts"); err != nil || len(accounts) == 0 {
		t.Fatalf("eth_accounts = %v, %v", accounts, err)
	}
	var h common.Hash
	value := (*hexutil.Big)(new(big.Int).Mul(big.NewInt(10), ether))
	if err := c.Client().CallContext(ctx, &h, "eth_sendTransaction", map[string]any{"from": accounts[0], "to": to, "value": value}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		bal, err := c.BalanceAt(ctx, to, nil)
		if err == nil && bal.Sign() > 0 {
			return
		}
		if i == 300 {
			t.Fatalf("funding not mined: %v", errors.Join(err, errors.New("timeout")))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// diskUsage counts allocated blocks, preallocated space included.
func diskUsage(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// requireAnchors checks that the chain holds exactly these epochs, each
// root in the block its receipt named: what a restarted chain must keep.
func requireAnchors(t *testing.T, ctx context.Context, a *Anchorer, roots [][32]byte, receipts []AnchorReceipt) {
	t.Helper()
	if n, err := a.LastEpoch(ctx); err != nil || n != uint64(len(roots)) {
		t.Fatalf("LastEpoch after restart = %d, %v; want %d", n, err, len(roots))
	}
	for i, want := range roots {
		root, rc, err := a.RootOf(ctx, uint64(i+1))
		if err != nil || root != want || rc != receipts[i] {
			t.Fatalf("RootOf(%d) after restart = %x %+v %v", i+1, root, rc, err)
		}
	}
}
