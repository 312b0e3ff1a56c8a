package chain

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
)

// DevChainID is the chain id of dev chains, as geth --dev.
const DevChainID = 1337

// Files StartDevChain keeps in DataDir besides geth's own (geth/, keystore/).
const (
	devKeyFile      = "dev.key"         // the funded dev account, hex, 0600
	devPasswordFile = "dev.password"    // the keystore's password, 0600
	devContractFile = "anchor-contract" // address EnsureContract deployed
	devLogFile      = "geth.log"        // geth's output, appended
)

// EnvGeth names the geth binary dev chains run; it comes first in FindGeth.
const EnvGeth = "STOCKADE_GETH"

// Dev chain timing.
const (
	devStartTimeout = 2 * time.Minute  // geth answering JSON-RPC after its start
	devStopTimeout  = 30 * time.Second // SIGTERM to SIGKILL
)

// ErrGethNotFound: no geth binary where FindGeth looks.
var ErrGethNotFound = errors.New("dev chain: geth not found: run `make geth`, set " + EnvGeth + " or give --geth")

// DevConfig configures a dev chain.
type DevConfig struct {
	DataDir  string        // chain data, dev key and contract address; kept across restarts
	HTTPAddr string        // JSON-RPC listen address, e.g. 127.0.0.1:8545 (port 0 picks a free one); empty: 127.0.0.1:0
	Period   time.Duration // block interval, whole seconds; 0 seals a block whenever a transaction arrives
	Geth     string        // the geth binary; empty: FindGeth
}

// DevChain is `geth --dev` (the pinned go-ethereum release, `make geth`)
// running as a child process on DataDir: one account funded in genesis
// (the dev key), blocks sealed by geth's simulated beacon client, no
// peers. The child gets SIGTERM if this process dies.
type DevChain struct {
	dir string
	url string
	key *ecdsa.PrivateKey
	cmd *exec.Cmd

	done    chan struct{} // closed when geth has exited
	exitErr error         // why; set before done is closed
	stopped bool          // Close asked it to stop
	mu      sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// FindGeth is the geth a dev chain runs without DevConfig.Geth: $STOCKADE_GETH;
// else geth, then tools/geth, in the directory of this executable (so
// bin/stockade finds `make geth`'s bin/tools/geth); else geth on $PATH.
func FindGeth() (string, error) {
	exeDir := ""
	if exe, err := os.Executable(); err == nil {
		exeDir = filepath.Dir(exe)
	}
	return findGeth(os.Getenv(EnvGeth), exeDir)
}

func findGeth(env, exeDir string) (string, error) {
	if env != "" {
		return checkGeth(env, EnvGeth+"=")
	}
	if exeDir != "" {
		for _, p := range []string{filepath.Join(exeDir, "geth"), filepath.Join(exeDir, "tools", "geth")} {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath("geth"); err == nil {
		return filepath.Abs(p)
	}
	return "", ErrGethNotFound
}

// checkGeth resolves a geth path given by the user (what names it).
func checkGeth(path, what string) (string, error) {
	p, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("dev chain: geth (%s%s): %w", what, path, err)
	}
	return filepath.Abs(p)
}

// StartDevChain starts geth --dev on cfg.DataDir and returns once it
// answers JSON-RPC. The first start creates the dev key (DataDir/dev.key,
// unless SeedDevKey put one there) and imports it into geth's keystore,
// so that geth's genesis funds it; later starts reopen the chain as it
// was, anchors included, also after geth was killed.
func StartDevChain(ctx context.Context, cfg DevConfig) (*DevChain, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		return nil, errors.New("chain: dev chain needs a data directory")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	geth := cfg.Geth
	if geth == "" {
		geth, err = FindGeth()
	} else {
		geth, err = checkGeth(geth, "")
	}
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(cmp.Or(cfg.HTTPAddr, "127.0.0.1:0"))
	if err != nil {
		return nil, fmt.Errorf("chain: http address: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("chain: http port %q: %w", port, err)
	}
	if host == "" {
		host = "0.0.0.0" // as Go listens on ":port"; geth would not listen at all
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if !exists(filepath.Join(dir, "geth", "chaindata")) {
		// A contract recorded for a chain that is gone would not be there.
		if err := os.Remove(filepath.Join(dir, devContractFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if !exists(filepath.Join(dir, devKeyFile)) {
			if accounts, err := keystoreAccounts(dir); err != nil || len(accounts) > 0 {
				return nil, errors.Join(err, fmt.Errorf("chain: %s has a keystore (%v) but no %s", dir, accounts, devKeyFile))
			}
			if _, err := GenerateKeyFile(filepath.Join(dir, devKeyFile)); err != nil {
				return nil, err
			}
		}
	}
	key, err := LoadKeyFile(filepath.Join(dir, devKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		// The genesis funded a key that is gone: the chain is unusable.
		return nil, fmt.Errorf("chain: %s has a chain but no %s", dir, devKeyFile)
	}
	if err != nil {
		return nil, err
	}
	if err := importDevKey(ctx, geth, dir, key); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		p := port
		if port == "0" {
			if p, err = freePort(host); err != nil {
				return nil, fmt.Errorf("chain: a free port on %s: %w", host, err)
			}
		}
		d := &DevChain{dir: dir, key: key, url: "http://" + net.JoinHostPort(host, p), done: make(chan struct{})}
		err := d.start(ctx, geth, host, p, cfg.Period)
		if err == nil {
			return d, nil
		}
		// Another process may have taken the port picked between our
		// probe and geth's bind: once more with another.
		if port != "0" || attempt == 2 || !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// freePort is a port free on host when asked.
func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, p, err := net.SplitHostPort(l.Addr().String())
	return p, err
}

// keystoreAccounts lists the accounts of the key files in dir/keystore,
// as geth's keystore reads them (it skips dot files and editor backups).
func keystoreAccounts(dir string) ([]common.Address, error) {
	ks := filepath.Join(dir, "keystore")
	ents, err := os.ReadDir(ks)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []common.Address
	for _, e := range ents {
		if n := e.Name(); e.IsDir() || strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(ks, e.Name()))
		if err != nil {
			return nil, err
		}
		var kf struct {
			Address string `json:"address"`
		}
		if err := json.Unmarshal(b, &kf); err != nil || !common.IsHexAddress(kf.Address) {
			return nil, fmt.Errorf("chain: %s is not a key file", filepath.Join(ks, e.Name()))
		}
		out = append(out, common.HexToAddress(kf.Address))
	}
	return out, nil
}

// checkKeystore refuses a keystore holding an account other than want:
// geth --dev funds and unlocks the first account of its keystore.
func checkKeystore(dir string, want common.Address) (have bool, err error) {
	accounts, err := keystoreAccounts(dir)
	if err != nil {
		return false, err
	}
	for _, a := range accounts {
		if a != want {
			return false, fmt.Errorf("chain: %s holds account %s, not the dev key's %s", filepath.Join(dir, "keystore"), a.Hex(), want.Hex())
		}
	}
	return len(accounts) > 0, nil
}

// importDevKey puts the dev key into geth's keystore (geth account
// import), encrypted with a random password kept in DataDir/dev.password,
// unless it is there.
func importDevKey(ctx context.Context, geth, dir string, key *ecdsa.PrivateKey) error {
	have, err := checkKeystore(dir, crypto.PubkeyToAddress(key.PublicKey))
	if err != nil || have {
		if have && !exists(filepath.Join(dir, devPasswordFile)) {
			return fmt.Errorf("chain: %s has the dev account in its keystore but no %s to unlock it", dir, devPasswordFile)
		}
		return err
	}
	pw := filepath.Join(dir, devPasswordFile)
	if !exists(pw) {
		b := make([]byte, 32)
		rand.Read(b)
		if err := writeFile0600(pw, hex.EncodeToString(b)+"\n"); err != nil {
			return fmt.Errorf("chain: dev password: %w", err)
		}
	}
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// --lightkdf: geth --dev unlocks the account at every start, and
	// standard scrypt takes a second and 256 MB each time.
	out, err := exec.CommandContext(ictx, geth, "account", "import", "--datadir", dir, "--password", pw, "--lightkdf",
		filepath.Join(dir, devKeyFile)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chain: geth account import: %v: %s", err, lastLines(string(out), 5))
	}
	if have, err := checkKeystore(dir, crypto.PubkeyToAddress(key.PublicKey)); err != nil || !have {
		return errors.Join(err, fmt.Errorf("chain: geth account import left no key in %s: %s", filepath.Join(dir, "keystore"), lastLines(string(out), 5)))
	}
	return nil
}

// writeFile0600 writes a new file through a temporary one.
func writeFile0600(path, content string) error {
	tmp := path + ".tmp"
	os.Remove(tmp) // left by a crash: O_EXCL below would refuse it
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// start runs geth and waits until it answers as this dev chain.
func (d *DevChain) start(ctx context.Context, geth, host, port string, period time.Duration) error {
	args := []string{"--dev", "--datadir", d.dir, "--password", filepath.Join(d.dir, devPasswordFile),
		"--http", "--http.addr", host, "--http.port", port, "--http.api", "eth,net,web3",
		"--ipcdisable", "--nodiscover", "--maxpeers", "0",
		// Each block's state on disk as it is sealed (hash scheme, no
		// pruning), in a database that hands each write to the kernel
		// before returning (LevelDB; pebble queues it for a background
		// flush): a killed geth keeps every block, anchors included.
		// geth's defaults keep the last 128 blocks' state in memory, and
		// a dev chain has no peer to get lost blocks back from. Pebble
		// would also preallocate a write-ahead log sized from --cache.
		"--state.scheme", "hash", "--gcmode", "archive", "--db.engine", "leveldb", "--cache", "64",
		// Transaction and log indexes for the whole chain: RootOf
		// searches it all.
		"--history.transactions", "0", "--history.logs", "0",
		"--verbosity", "2"}
	if s := int64(period / time.Second); s > 0 {
		args = append(args, "--dev.period", strconv.FormatInt(s, 10))
	}
	logPath := filepath.Join(d.dir, devLogFile)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("chain: geth log: %w", err)
	}
	fmt.Fprintf(logf, "==== %s stockade: starting %s %s\n", time.Now().Format(time.RFC3339), geth, strings.Join(args, " "))
	offset, _ := logf.Seek(0, io.SeekEnd)
	tail := func() string { return logTail(logPath, offset, 8) }

	d.cmd = exec.Command(geth, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{
		// A controller killed outright must not leave geth behind.
		Pdeathsig: syscall.SIGTERM,
		// Its own group: a terminal's ^C goes to this process, which
		// stops geth in order (Close).
		Setpgid: true,
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits,
		// not the process, and Go ends threads of goroutines that exit
		// locked. Locked to its thread for geth's lifetime, this
		// goroutine keeps that thread until geth has exited.
		runtime.LockOSThread()
		if err := d.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := d.cmd.Wait()
		d.mu.Lock()
		if !d.stopped {
			d.exitErr = fmt.Errorf("chain: geth exited: %v: %s", err, tail())
		}
		d.mu.Unlock()
		close(d.done)
	}()
	err = <-started
	logf.Close() // geth has its own descriptor
	if err != nil {
		return fmt.Errorf("chain: starting geth: %w", err)
	}
	if err := d.waitReady(ctx, tail); err != nil {
		d.Close()
		return err
	}
	return nil
}

// waitReady waits until geth answers eth_chainId as this dev chain.
func (d *DevChain) waitReady(ctx context.Context, tail func() string) error {
	ctx, cancel := context.WithTimeout(ctx, devStartTimeout)
	defer cancel()
	c, err := rpc.DialOptions(ctx, d.localURL())
	if err != nil {
		return err
	}
	defer c.Close()
	var lastErr error
	for {
		if lastErr = d.probe(ctx, c); lastErr == nil {
			return nil
		}
		if errors.Is(lastErr, errNotThisChain) {
			return lastErr
		}
		select {
		case <-d.done:
			return d.Err()
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return fmt.Errorf("chain: geth not answering on %s after %v: %v: %s", d.url, devStartTimeout, lastErr, tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var errNotThisChain = errors.New("not this dev chain")

// probe asks the node on the URL for its chain id and accounts: another
// process on the port answers too.
func (d *DevChain) probe(ctx context.Context, c *rpc.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var id hexutil.Uint64
	if err := c.CallContext(ctx, &id, "eth_chainId"); err != nil {
		return err
	}
	var accounts []common.Address
	if err := c.CallContext(ctx, &accounts, "eth_accounts"); err != nil {
		return err
	}
	if id != DevChainID || len(accounts) == 0 || accounts[0] != d.Account() {
		return fmt.Errorf("chain: %w: %s answers as chain %d with accounts %v; want chain %d, account %s (is another node on the port?)",
			errNotThisChain, d.url, id, accounts, DevChainID, d.Account().Hex())
	}
	return nil
}

// localURL is the URL on this host: the loopback address for an
// unspecified one.
func (d *DevChain) localURL() string {
	u := strings.TrimPrefix(d.url, "http://")
	host, port, _ := net.SplitHostPort(u)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// logTail is the last n lines of path from offset on.
func logTail(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > max {
		offset = fi.Size() - max
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, max))
	return lastLines(string(b), n) + " (" + path + ")"
}

// lastLines is s's last n non-empty lines, on one line.
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "no output"
	}
	return strings.Join(lines, " | ")
}

// URL is the JSON-RPC endpoint.
func (d *DevChain) URL() string { return d.url }

// Client is a JSON-RPC client of the chain (namespaces eth, net, web3).
func (d *DevChain) Client() *rpc.Client {
	c, err := rpc.DialHTTP(d.localURL())
	if err != nil {
		panic(err) // only for a malformed URL, and the URL is ours
	}
	return c
}

// ChainID is DevChainID.
func (d *DevChain) ChainID() uint64 { return DevChainID }

// KeyFile is the dev account's key, funded in genesis: the key to anchor with.
func (d *DevChain) KeyFile() string { return filepath.Join(d.dir, devKeyFile) }

// LogFile is where geth's output goes.
func (d *DevChain) LogFile() string { return filepath.Join(d.dir, devLogFile) }

// Account is the dev account.
func (d *DevChain) Account() common.Address { return crypto.PubkeyToAddress(d.key.PublicKey) }

// Config is how to reach this chain as the dev account, with the contract
// EnsureContract recorded, if any.
func (d *DevChain) Config() Config {
	c := Config{RPCURL: d.localURL(), ChainID: DevChainID, KeyFile: d.KeyFile()}
	if b, err := os.ReadFile(filepath.Join(d.dir, devContractFile)); err == nil {
		c.Contract = strings.TrimSpace(string(b))
	}
	return c
}

// EnsureContract returns the anchor contract recorded in DataDir, deploying
// it (as the dev account) and recording it first if there is none.
func (d *DevChain) EnsureContract(ctx context.Context) (common.Address, error) {
	cfg := d.Config()
	a, err := Dial(ctx, cfg) // checks a recorded contract is still there
	if err != nil {
		return common.Address{}, err
	}
	defer a.Close()
	if cfg.Contract != "" {
		return a.Contract(), nil
	}
	addr, err := a.Deploy(ctx)
	if err != nil {
		return common.Address{}, err
	}
	tmp := filepath.Join(d.dir, devContractFile+".tmp")
	if err := os.WriteFile(tmp, []byte(addr.Hex()+"\n"), 0o644); err != nil {
		return common.Address{}, err
	}
	return addr, os.Rename(tmp, filepath.Join(d.dir, devContractFile))
}

// Done is closed when geth has exited, stopped by Close or not.
func (d *DevChain) Done() <-chan struct{} { return d.done }

// Err is why geth exited (with its last log lines) if it exited on its
// own; nil while it runs, or when Close stopped it.
func (d *DevChain) Err() error {
	select {
	case <-d.done:
	default:
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exitErr
}

// Close stops geth: SIGTERM, then SIGKILL after 30 s. The chain stays in
// DataDir.
func (d *DevChain) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.stopped = true
		d.mu.Unlock()
		select {
		case <-d.done:
			return
		default:
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(devStopTimeout):
			d.cmd.Process.Kill()
			<-d.done
			d.closeErr = fmt.Errorf("chain: geth did not stop within %v of SIGTERM; killed it", devStopTimeout)
		}
	})
	return d.closeErr
}
