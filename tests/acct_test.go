package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/accounting/chain"
	"github.com/stockade-hpc/stockade/accounting/chain/chaintest"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

// acctConfig is a cluster configuration that seals an epoch every second
// (each job's record in an epoch of its own, mostly), then section.
func acctConfig(section string) string {
	return `cluster_name = "acct"
[[partitions]]
name = "batch"
nodes = "node[1-2]"
default = true
max_time = "1-00:00:00"
default_time = "1:00:00"
def_mem_per_cpu = "64M"

[accounting]
interval = "1s"

` + section
}

// acctStatus asks the given controllers (all if none) for the status.
func acctStatus(c *testcluster.Cluster, servers ...string) (api.Status, error) {
	cl := c.Client("")
	if len(servers) > 0 {
		cl.Servers = servers
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var st api.Status
	err := cl.Do(ctx, "GET", "/v1/status", nil, &st)
	return st, err
}

// waitAnchored waits until at least records records exist, all sealed
// and every epoch anchored.
func waitAnchored(t *testing.T, c *testcluster.Cluster, records uint64, servers ...string) api.Status {
	t.Helper()
	var st api.Status
	c.WaitFor(60*time.Second, fmt.Sprintf("%d records sealed and anchored", records), func() bool {
		var err error
		st, err = acctStatus(c, servers...)
		return err == nil && st.AcctRecords >= records && st.AcctUnsealedRecords == 0 &&
			st.AcctLastSealedEpoch > 0 && st.AcctUnanchoredEpochs == 0
	})
	return st
}

// runJob submits a job as the user and waits for it to end.
func runJob(t *testing.T, c *testcluster.Cluster, tok, dir string) uint64 {
	t.Helper()
	id := submit(t, c, tok, dir, "-o", "/dev/null", "--wrap", "true")
	if j := c.WaitJobEnd(id, 60*time.Second); j.State != api.JobCompleted {
		t.Fatalf("job %d: %s", id, j.State)
	}
	return id
}

// chainInfo is the chain the controllers report.
func chainInfo(t *testing.T, c *testcluster.Cluster) accounting.ChainInfo {
	t.Helper()
	er, err := accounting.Epochs(context.Background(), c.Client(""), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return er.Chain
}

// anchorLogs are the contract's Anchored logs by epoch.
func anchorLogs(t *testing.T, rpc, contract string) map[uint64][]uint64 {
	t.Helper()
	ec, err := ethclient.Dial(rpc)
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	logs, err := ec.FilterLogs(context.Background(), ethereum.FilterQuery{
		FromBlock: new(big.Int), Addresses: []common.Address{common.HexToAddress(contract)},
		Topics: [][]common.Hash{{chain.AnchoredTopic}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64][]uint64{} // epoch → blocks
	for _, l := range logs {
		n := new(big.Int).SetBytes(l.Topics[1].Bytes()).Uint64()
		out[n] = append(out[n], l.BlockNumber)
	}
	return out
}

// checkChain checks that epochs 1..last are each anchored exactly once,
// in epoch order, in the transactions the controllers record.
func checkChain(t *testing.T, c *testcluster.Cluster, rpc, contract string, last uint64) {
	t.Helper()
	logs := anchorLogs(t, rpc, contract)
	if uint64(len(logs)) != last {
		t.Errorf("%d epochs anchored on chain, want %d: %v", len(logs), last, logs)
	}
	er, err := accounting.Epochs(context.Background(), c.Client(""), 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var prev uint64
	for n := uint64(1); n <= last; n++ {
		blocks := logs[n]
		if len(blocks) != 1 {
			t.Errorf("epoch %d anchored %d times (blocks %v)", n, len(blocks), blocks)
			continue
		}
		if blocks[0] < prev {
			t.Errorf("epoch %d anchored in block %d, before epoch %d's block %d", n, blocks[0], n-1, prev)
		}
		prev = blocks[0]
		var rec *accounting.Anchor
		if int(n) <= len(er.Epochs) {
			rec = er.Epochs[n-1].Anchor
		}
		if rec == nil || rec.BlockNumber != blocks[0] {
			t.Errorf("epoch %d: controllers record anchor %+v, the chain has it in block %d", n, rec, blocks[0])
		}
	}
}

// verifyAll runs `stockade acct verify --all`, which must pass.
func verifyAll(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	out, errOut, code := c.CLI("", "stockade", "acct", "verify", "--all")
	t.Logf("acct verify --all:\n%s%s", out, errOut)
	if code != 0 || !strings.Contains(out, ": OK") || strings.Contains(out, ": FAILED") {
		t.Errorf("acct verify --all: exit %d", code)
	}
}

// useGeth makes geth from `make geth` the one the test's controllers and
// `stockade chain --dev` run ($STOCKADE_GETH, which they inherit).
func useGeth(t *testing.T) {
	t.Setenv(chain.EnvGeth, chaintest.Geth(t))
}

// TestAcctDevChain: the default chain, the dev chain (geth --dev) that the
// controller that bootstrapped runs. Every controller gets the anchoring
// key; records are sealed and anchored; verify --all passes; a user's
// proof verifies against the chain alone, and a tampered one fails naming
// the field.
func TestAcctDevChain(t *testing.T) {
	useGeth(t)
	start := time.Now()
	c := testcluster.StartClusterWith(t, testcluster.Options{Controllers: 3, Agents: []string{"node1"},
		Config: acctConfig(fmt.Sprintf("[chain]\ndev_http = \"127.0.0.1:%d\"\n", testcluster.FreePort(t)))})
	key, err := os.ReadFile(filepath.Join(c.Controllers[0].DataDir, "anchor-key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ctl := range c.Controllers[1:] {
		fi, err := os.Stat(filepath.Join(ctl.DataDir, "anchor-key"))
		if err != nil {
			t.Errorf("%s's anchoring key: %v", ctl.ID, err)
			continue
		}
		k, _ := os.ReadFile(filepath.Join(ctl.DataDir, "anchor-key"))
		if fi.Mode().Perm() != 0o600 || !bytes.Equal(k, key) {
			t.Errorf("%s's anchoring key: mode %v, same as c1's: %v", ctl.ID, fi.Mode(), bytes.Equal(k, key))
		}
		if _, err := os.Stat(filepath.Join(ctl.DataDir, "devchain")); err == nil {
			t.Errorf("%s runs a dev chain too", ctl.ID)
		}
	}
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	var ids []string
	for range 3 {
		ids = append(ids, strconv.FormatUint(runJob(t, c, tok, dir), 10))
	}
	st := waitAnchored(t, c, 3)
	t.Logf("3 jobs sealed into %d epochs and anchored %s after the cluster started", st.AcctLastSealedEpoch, time.Since(start).Round(time.Millisecond))
	ci := chainInfo(t, c)
	if ci.ChainID != chain.DevChainID || !strings.HasPrefix(ci.RPCURL, "http://127.0.0.1:") || ci.Contract == "" {
		t.Fatalf("chain %+v", ci)
	}
	checkChain(t, c, ci.RPCURL, ci.Contract, st.AcctLastSealedEpoch)
	verifyAll(t, c)

	out, errOut, code := c.CLI(tok, "sacct", "-j", strings.Join(ids, ","), "-X", "-n", "-P", "--format=JobID,State,Charge,Currency,Epoch")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 {
		t.Fatalf("sacct: exit %d: %q %s", code, out, errOut)
	} else {
		for _, l := range lines {
			f := strings.Split(l, "|")
			if len(f) != 5 || f[1] != "COMPLETED" || f[3] != "credit" || f[4] == "" || f[4] == "0" {
				t.Errorf("sacct line %q", l)
			}
		}
	}
	if out, errOut, code := c.CLI(tok, "stockade", "acct", "statement"); code != 0 || !strings.Contains(out, "credit") {
		t.Errorf("acct statement: exit %d: %s%s", code, out, errOut)
	}

	// The proof, checked against the chain alone.
	proof, errOut, code := c.CLI(tok, "stockade", "acct", "proof", "--job", ids[0])
	if code != 0 {
		t.Fatalf("acct proof: exit %d: %s", code, errOut)
	}
	pf := filepath.Join(t.TempDir(), "proof.json")
	if err := os.WriteFile(pf, []byte(proof), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(file string) (string, int) {
		out, errOut, code := c.CLIIn("", tok, []string{"STOCKADE_SERVERS=127.0.0.1:1"}, "stockade", "acct", "verify", "--proof", file, "--rpc", ci.RPCURL)
		return out + errOut, code
	}
	if out, code := check(pf); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("verify --proof: exit %d: %s", code, out)
	}
	// Tampered: one field each.
	for _, tc := range []struct {
		field string
		edit  func(m map[string]any)
	}{
		{"record", func(m map[string]any) { m["record"].(map[string]any)["charge"] = 1 }},
		{"epoch", func(m map[string]any) { m["epoch"] = m["epoch"].(float64) + 1 }},
		{"leaf_index", func(m map[string]any) { m["leaf_index"] = m["tree_size"].(float64) + 3 }},
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(proof), &m); err != nil {
			t.Fatal(err)
		}
		tc.edit(m)
		b, _ := json.Marshal(m)
		f := filepath.Join(t.TempDir(), tc.field+".json")
		os.WriteFile(f, b, 0o644)
		out, code := check(f)
		t.Logf("proof with %s tampered: exit %d:\n%s", tc.field, code, out)
		if code != 1 || !strings.Contains(out, tc.field+":") {
			t.Errorf("proof with %s tampered: exit %d, want 1 naming %s:\n%s", tc.field, code, tc.field, out)
		}
	}
}

// TestAcctChainOutage: the controller running the dev chain is killed
// (the leader; its geth stops with it); epochs sealed meanwhile wait, the
// status says why, and once it is back the new leader anchors them in
// order, each once.
func TestAcctChainOutage(t *testing.T) {
	useGeth(t)
	c := testcluster.StartClusterWith(t, testcluster.Options{Controllers: 3, Agents: []string{"node1"},
		Config: acctConfig(fmt.Sprintf("[chain]\ndev_http = \"127.0.0.1:%d\"\n", testcluster.FreePort(t)))})
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	runJob(t, c, tok, dir)
	st := waitAnchored(t, c, 1)
	ci := chainInfo(t, c)
	c1 := c.Controllers[0]
	if st.Leader != c1.ID {
		t.Fatalf("leader %s, want %s (the bootstrap controller, which runs the chain)", st.Leader, c1.ID)
	}
	anchored := st.AcctLastAnchoredEpoch
	down := time.Now()
	c1.Kill9()
	others := c.APIAddrs()[1:]
	// Each job's record sealed in its own epoch before the next job runs:
	// three jobs within one 1 s interval would otherwise share an epoch, and
	// the queue worked off later would be one epoch long.
	for i := range uint64(3) {
		runJob(t, c, tok, dir)
		c.WaitFor(60*time.Second, fmt.Sprintf("record %d sealed", 2+i), func() bool {
			st, _ = acctStatus(c, others...)
			return st.AcctRecords == 2+i && st.AcctUnsealedRecords == 0
		})
	}
	c.WaitFor(60*time.Second, "epochs sealed and waiting, with the reason", func() bool {
		st, _ = acctStatus(c, others...)
		return st.AcctUnsealedRecords == 0 && st.AcctRecords == 4 && st.AcctUnanchoredEpochs >= 3 &&
			st.AcctLastAnchoredEpoch == anchored && strings.Contains(st.AcctAnchorError, "connection refused")
	})
	t.Logf("chain down: leader %s, %d epochs waiting: %s", st.Leader, st.AcctUnanchoredEpochs, st.AcctAnchorError)
	out, _, _ := c.CLI("", "stockade", "status")
	t.Logf("stockade status:\n%s", out)
	c1.Restart(t)
	st = waitAnchored(t, c, 4)
	t.Logf("all %d epochs anchored %s after the chain went down", st.AcctLastSealedEpoch, time.Since(down).Round(time.Millisecond))
	if st.AcctAnchorError != "" {
		t.Errorf("anchor error after recovery: %q", st.AcctAnchorError)
	}
	checkChain(t, c, ci.RPCURL, ci.Contract, st.AcctLastSealedEpoch)
	verifyAll(t, c)
}

// devChainProc is `stockade chain --dev`, an external chain to the
// controllers, which tests stop and restart.
type devChainProc struct {
	t        *testing.T
	dir, rpc string
	port     int
	contract string
	keyFile  string
	cmd      *exec.Cmd
	out      bytes.Buffer
	mu       sync.Mutex
}

func startDevChainProc(t *testing.T) *devChainProc {
	d := &devChainProc{t: t, dir: t.TempDir(), port: testcluster.FreePort(t)}
	d.rpc = fmt.Sprintf("http://127.0.0.1:%d", d.port)
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *devChainProc) start() {
	t := d.t
	t.Helper()
	d.cmd = exec.Command(testcluster.Binary(t), "chain", "--dev", "--datadir", d.dir, "--http", fmt.Sprintf("127.0.0.1:%d", d.port))
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = &lockedWriter{mu: &d.mu, w: &d.out}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				d.mu.Lock()
				defer d.mu.Unlock()
				t.Fatalf("stockade chain --dev exited:\n%s", d.out.String())
			}
			if v, ok := strings.CutPrefix(l, "contract:"); ok {
				d.contract = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(l, "account:"); ok {
				_, k, _ := strings.Cut(v, "(key ")
				d.keyFile = strings.TrimSuffix(strings.TrimSpace(k), ")")
				go func() {
					for range lines {
					}
				}()
				return
			}
		case <-timeout:
			t.Fatal("stockade chain --dev did not start within 60 s")
		}
	}
}

func (d *devChainProc) stop() {
	if d.cmd == nil || d.cmd.Process == nil || d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// keyAccount is the account of a hex key file.
func keyAccount(t *testing.T, path string) (*ecdsa.PrivateKey, common.Address) {
	t.Helper()
	k, err := chain.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k, crypto.PubkeyToAddress(k.PublicKey)
}

func nonceOf(t *testing.T, rpc string, a common.Address) uint64 {
	t.Helper()
	ec, err := ethclient.Dial(rpc)
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	n, err := ec.NonceAt(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAcctLeaderKilledBeforeRecording: the leader's anchor transaction is
// mined, then (held by the test hook) it is killed before recording it,
// with another epoch sealed behind. The new leader records the first
// from the chain without a transaction and anchors the second: each
// epoch once, and the anchoring account sent one transaction per epoch.
func TestAcctLeaderKilledBeforeRecording(t *testing.T) {
	useGeth(t)
	d := startDevChainProc(t)
	t.Setenv("STOCKADE_TEST_ANCHOR_HOLD", "c1=5m")
	c := testcluster.StartClusterWith(t, testcluster.Options{Controllers: 3, Agents: []string{"node1"},
		Config: acctConfig(fmt.Sprintf("[chain]\nrpc_url = %q\nchain_id = %d\ncontract = %q\nkey_file = %q\n",
			d.rpc, chain.DevChainID, d.contract, d.keyFile))})
	_, account := keyAccount(t, d.keyFile)
	sent0 := nonceOf(t, d.rpc, account) // the deploy
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	c1 := c.Controllers[0]

	runJob(t, c, tok, dir)
	c.WaitFor(60*time.Second, "c1 to hold a mined anchor", func() bool {
		b, _ := os.ReadFile(c1.Log())
		return bytes.Contains(b, []byte("test hook: holding"))
	})
	if logs := anchorLogs(t, d.rpc, d.contract); len(logs[1]) != 1 {
		t.Fatalf("epoch 1 on chain: %v", logs)
	}
	runJob(t, c, tok, dir)
	var st api.Status
	c.WaitFor(30*time.Second, "a second epoch sealed", func() bool {
		var err error
		st, err = acctStatus(c)
		return err == nil && st.AcctLastSealedEpoch >= 2 && st.AcctUnsealedRecords == 0
	})
	if st.Leader != c1.ID || st.AcctLastAnchoredEpoch != 0 {
		t.Fatalf("before the kill: leader %s, last anchored epoch %d", st.Leader, st.AcctLastAnchoredEpoch)
	}
	sealed := st.AcctLastSealedEpoch
	c1.Kill9()
	killed := time.Now()
	st = waitAnchored(t, c, 2, c.APIAddrs()[1:]...)
	t.Logf("new leader %s anchored epochs 1..%d %s after the kill", st.Leader, st.AcctLastSealedEpoch, time.Since(killed).Round(time.Millisecond))
	if st.AcctLastSealedEpoch != sealed {
		t.Errorf("sealed epoch %d, want %d", st.AcctLastSealedEpoch, sealed)
	}
	var recorded bool
	for _, ctl := range c.Controllers[1:] {
		b, _ := os.ReadFile(ctl.Log())
		recorded = recorded || bytes.Contains(b, []byte("epoch already anchored on chain; recording it"))
	}
	if !recorded {
		t.Error("the new leader did not record epoch 1 from the chain")
	}
	checkChain(t, c, d.rpc, d.contract, sealed)
	if sent := nonceOf(t, d.rpc, account) - sent0; sent != sealed {
		t.Errorf("the anchoring account sent %d transactions for %d epochs", sent, sealed)
	}
	verifyAll(t, c)
}

// startGeth runs `geth --dev` on a fresh directory until the test ends.
func startGeth(t *testing.T, bin string) string {
	t.Helper()
	port := testcluster.FreePort(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(bin, "--dev", "--datadir", t.TempDir(),
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(port), "--http.api", "eth,net,web3",
		"--ipcdisable", "--nodiscover", "--maxpeers", "0", "--cache", "64", "--verbosity", "2")
	cmd.Stdout, cmd.Stderr = &lockedWriter{&mu, &logs}, &lockedWriter{&mu, &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("geth output:\n%s", logs.String())
			mu.Unlock()
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ec, err := ethclient.Dial(url)
		if err == nil {
			_, err = ec.ChainID(context.Background())
			ec.Close()
			if err == nil {
				return url
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("geth exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("geth not answering on %s: %v", url, err)
		}
	}
}

// fund sends 10 ether from geth's dev account to a.
func fund(t *testing.T, rpc string, a common.Address) {
	t.Helper()
	ctx := context.Background()
	ec, err := ethclient.Dial(rpc)
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	var accounts []common.Address
	if err := ec.Client().CallContext(ctx, &accounts, "eth_accounts"); err != nil || len(accounts) == 0 {
		t.Fatalf("eth_accounts = %v, %v", accounts, err)
	}
	value := (*hexutil.Big)(new(big.Int).Mul(big.NewInt(10), big.NewInt(1e18)))
	var h common.Hash
	if err := ec.Client().CallContext(ctx, &h, "eth_sendTransaction", map[string]any{"from": accounts[0], "to": a, "value": value}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		bal, err := ec.BalanceAt(ctx, a, nil)
		if err == nil && bal.Sign() > 0 {
			return
		}
		if i == 300 {
			t.Fatal(errors.Join(err, errors.New("funding not mined")))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAcctGeth: the happy path on a real `geth --dev`, with no contract
// configured: the leader deploys one as the cluster's anchoring key (the
// test funds it) and records it for clients.
func TestAcctGeth(t *testing.T) {
	bin := chaintest.Geth(t)
	rpc := startGeth(t, bin)
	c := testcluster.StartClusterWith(t, testcluster.Options{Controllers: 1, Agents: []string{"node1"},
		Config: acctConfig(fmt.Sprintf("[chain]\nrpc_url = %q\nchain_id = %d\n", rpc, chain.DevChainID))})
	_, account := keyAccount(t, filepath.Join(c.Controllers[0].DataDir, "anchor-key"))
	fund(t, rpc, account)
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	var ids []uint64
	for range 2 {
		ids = append(ids, runJob(t, c, tok, dir))
	}
	st := waitAnchored(t, c, 2)
	ci := chainInfo(t, c)
	if ci.RPCURL != rpc || ci.ChainID != chain.DevChainID || ci.Contract == "" {
		t.Fatalf("recorded chain %+v", ci)
	}
	checkChain(t, c, rpc, ci.Contract, st.AcctLastSealedEpoch)
	if sent := nonceOf(t, rpc, account); sent != 1+st.AcctLastSealedEpoch {
		t.Errorf("the anchoring account sent %d transactions: want a deploy and %d anchors", sent, st.AcctLastSealedEpoch)
	}
	verifyAll(t, c)
	proof, errOut, code := c.CLI(tok, "stockade", "acct", "proof", "--job", strconv.FormatUint(ids[1], 10))
	if code != 0 {
		t.Fatalf("acct proof: exit %d: %s", code, errOut)
	}
	pf := filepath.Join(t.TempDir(), "proof.json")
	os.WriteFile(pf, []byte(proof), 0o644)
	out, errOut, code := c.CLI(tok, "stockade", "acct", "verify", "--proof", pf, "--rpc", rpc)
	if code != 0 {
		t.Errorf("verify --proof on geth: exit %d: %s%s", code, out, errOut)
	}
}
