package chain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/rawdb"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/rpc"
)

// DevChainID is the chain id of dev chains, as geth --dev.
const DevChainID = 1337

// Files StartDevChain keeps in DataDir besides the node's own (under geth/,
// the layout geth --dev --datadir uses).
const (
	devKeyFile      = "dev.key"         // the funded dev account, hex, 0600
	devContractFile = "anchor-contract" // address EnsureContract deployed
)

// DevConfig configures an embedded dev-mode chain.
type DevConfig struct {
	DataDir  string        // chain data, dev key and contract address; kept across restarts
	HTTPAddr string        // JSON-RPC listen address, e.g. 127.0.0.1:8545 (port 0 picks one); empty for none
	Period   time.Duration // block interval, whole seconds; 0 seals a block whenever a transaction arrives
}

// DevChain is go-ethereum's dev-mode node (what geth --dev runs) embedded in
// this process: one account funded in genesis, blocks sealed by a simulated
// beacon client, no peers.
type DevChain struct {
	dir   string
	stack *node.Node
	key   *ecdsa.PrivateKey
}

// StartDevChain starts a dev chain on cfg.DataDir. The first start creates
// the dev key (DataDir/dev.key) and a genesis funding it; later starts
// reopen the chain as it was, anchors included.
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	nc := node.Config{
		Name: "geth", // instance directory: DataDir/geth, as geth --datadir
		// LevelDB hands each write to the kernel before returning; pebble
		// (as geth opens it) queues it for a background flush, so a killed
		// process loses its last blocks, and anchors it reported mined.
		DBEngine: "leveldb",
		DataDir:  dir,
		P2P:      p2p.Config{MaxPeers: 0, NoDiscovery: true, NoDial: true, ListenAddr: ""},
		// What controllers use; no admin, debug, txpool or dev namespaces.
		HTTPModules:          []string{"eth", "net", "web3"},
		HTTPVirtualHosts:     []string{"localhost"},
		HTTPTimeouts:         rpc.DefaultHTTPTimeouts,
		BatchRequestLimit:    node.DefaultConfig.BatchRequestLimit,
		BatchResponseMaxSize: node.DefaultConfig.BatchResponseMaxSize,
		HTTPBodyLimit:        node.DefaultConfig.HTTPBodyLimit,
	}
	if cfg.HTTPAddr != "" {
		host, port, err := net.SplitHostPort(cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("chain: http address: %w", err)
		}
		if nc.HTTPPort, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("chain: http port %q: %w", port, err)
		}
		nc.HTTPHost = host
	}
	stack, err := node.New(&nc)
	if err != nil {
		return nil, fmt.Errorf("chain: dev node: %w", err)
	}
	d := &DevChain{dir: dir, stack: stack}
	if err := d.start(cfg); err != nil {
		stack.Close()
		return nil, err
	}
	return d, nil
}

func (d *DevChain) start(cfg DevConfig) error {
	fresh := rawdb.PreexistingDatabase(d.stack.ResolvePath("chaindata")) == ""
	if fresh {
		// A contract recorded for a chain that is gone would not be there.
		if err := os.Remove(filepath.Join(d.dir, devContractFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	keyPath := d.KeyFile()
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if !fresh {
			// The genesis funded a key that is gone: the chain is unusable.
			return fmt.Errorf("chain: %s has a chain but no %s", d.dir, devKeyFile)
		}
		if _, err := GenerateKeyFile(keyPath); err != nil {
			return err
		}
	}
	key, err := LoadKeyFile(keyPath)
	if err != nil {
		return err
	}
	d.key = key
	dev := crypto.PubkeyToAddress(key.PublicKey)

	ec := ethconfig.Defaults
	ec.NetworkId = DevChainID
	ec.SyncMode = ethconfig.FullSync
	if fresh {
		ec.Genesis = core.DeveloperGenesisBlock(11_500_000, &dev) // geth's --dev.gaslimit default
	} // else nil: reopen the stored genesis, as geth --dev does
	ec.Miner.PendingFeeRecipient = dev
	ec.Miner.GasPrice = big.NewInt(1)
	// Keep tx and log indexes for the whole chain: RootOf searches it all.
	ec.TransactionHistory, ec.LogHistory = 0, 0
	// Commit every block's state to disk as the block is sealed (hash
	// scheme, no pruning). The default path scheme keeps the last 128
	// blocks' state in memory until a clean shutdown: after a crash the
	// node rewinds to the last state on disk, and no peer has the lost
	// blocks, so anchors (and the contract) would be gone.
	ec.StateScheme, ec.NoPruning = rawdb.HashScheme, true
	// Small caches: a dev chain holds a few accounts, not mainnet state.
	// (The database cache also sizes the preallocated write-ahead log.)
	ec.DatabaseCache, ec.TrieCleanCache, ec.TrieDirtyCache, ec.SnapshotCache = 16, 16, 0, 0
	ec.TxPool.Journal = ""
	backend, err := eth.New(d.stack, &ec)
	if err != nil {
		return fmt.Errorf("chain: dev chain: %w", err)
	}
	if cfg := backend.BlockChain().Config(); cfg.ChainID == nil || cfg.ChainID.Uint64() != DevChainID {
		return fmt.Errorf("chain: %s holds chain %v, not a dev chain", d.dir, cfg.ChainID)
	}
	fs := filters.NewFilterSystem(backend.APIBackend, filters.Config{LogCacheSize: ec.FilterLogCacheSize, LogQueryLimit: ec.LogQueryLimit})
	d.stack.RegisterAPIs([]rpc.API{{Namespace: "eth", Service: filters.NewFilterAPI(fs)}})
	beacon, err := catalyst.NewSimulatedBeacon(uint64(cfg.Period/time.Second), dev, backend)
	if err != nil {
		return fmt.Errorf("chain: dev beacon: %w", err)
	}
	// Also starts sealing on demand when the period is 0.
	catalyst.RegisterSimulatedBeaconAPIs(d.stack, beacon)
	d.stack.RegisterLifecycle(beacon)
	if err := d.stack.Start(); err != nil {
		return fmt.Errorf("chain: dev node: %w", err)
	}
	return nil
}

// URL is the JSON-RPC endpoint ("" without DevConfig.HTTPAddr).
func (d *DevChain) URL() string {
	if d.stack.Config().HTTPHost == "" {
		return ""
	}
	return d.stack.HTTPEndpoint()
}

// Client is an in-process JSON-RPC client, with every namespace.
func (d *DevChain) Client() *rpc.Client { return d.stack.Attach() }

// ChainID is DevChainID.
func (d *DevChain) ChainID() uint64 { return DevChainID }

// KeyFile is the dev account's key, funded in genesis: the key to anchor with.
func (d *DevChain) KeyFile() string { return filepath.Join(d.dir, devKeyFile) }

// Account is the dev account.
func (d *DevChain) Account() common.Address { return crypto.PubkeyToAddress(d.key.PublicKey) }

// Config is how to reach this chain as the dev account, with the contract
// EnsureContract recorded, if any.
func (d *DevChain) Config() Config {
	c := Config{RPCURL: d.URL(), ChainID: DevChainID, KeyFile: d.KeyFile()}
	if b, err := os.ReadFile(filepath.Join(d.dir, devContractFile)); err == nil {
		c.Contract = strings.TrimSpace(string(b))
	}
	return c
}

// EnsureContract returns the anchor contract recorded in DataDir, deploying
// it (as the dev account) and recording it first if there is none.
func (d *DevChain) EnsureContract(ctx context.Context) (common.Address, error) {
	cfg := d.Config()
	if cfg.RPCURL == "" {
		return common.Address{}, errors.New("chain: EnsureContract needs DevConfig.HTTPAddr")
	}
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

// Close stops the node; the chain stays in DataDir.
func (d *DevChain) Close() error { return d.stack.Close() }
