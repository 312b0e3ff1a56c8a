// Package chain anchors sealed accounting epochs on an Ethereum chain: each
// epoch's 32-byte Merkle root goes into an Anchored log of a small owner-only
// contract (anchor.asm) that also enforces strictly increasing epochs. The
// chain is either an external node or, for development, the geth --dev
// child process of StartDevChain.
package chain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
)

// Config says where and as whom to anchor.
type Config struct {
	RPCURL   string // JSON-RPC endpoint, e.g. http://127.0.0.1:8545
	ChainID  uint64 // expected chain id; 0 accepts the node's
	KeyFile  string // hex private key (GenerateKeyFile); empty for read-only use
	Contract string // anchor contract address; empty until Deploy
}

// AnchorReceipt locates an epoch's anchoring transaction.
type AnchorReceipt struct {
	TxHash      common.Hash
	BlockNumber uint64
	GasUsed     uint64
}

var (
	// ErrRootMismatch: the epoch is already anchored with a different root.
	ErrRootMismatch = errors.New("chain: epoch already anchored with a different root")
	// ErrStaleEpoch: the contract's last epoch is at or above this one, and
	// this one was never anchored (epochs can be skipped, not back-filled).
	ErrStaleEpoch = errors.New("chain: epoch not above the contract's last epoch")
	// ErrNotOwner: the key is not the contract's owner.
	ErrNotOwner = errors.New("chain: key is not the anchor contract's owner")
	// ErrNotAnchored: RootOf found no Anchored log for the epoch.
	ErrNotAnchored = errors.New("chain: epoch not anchored")
	// ErrNoContract: no contract address configured yet (see Deploy).
	ErrNoContract = errors.New("chain: no anchor contract configured")
	// ErrNoKey: the Anchorer was dialled without a key file.
	ErrNoKey = errors.New("chain: no key file configured")
	// ErrReverted: the transaction was mined but failed, for no reason the
	// contract's state explains.
	ErrReverted = errors.New("chain: transaction reverted")

	// Kinds of TxError: the node refused the transaction. All are
	// transient for a caller that backs off, except ErrInsufficientFunds
	// which needs the key's account topped up.
	ErrNonce             = errors.New("chain: nonce conflict")
	ErrUnderpriced       = errors.New("chain: fee too low")
	ErrInsufficientFunds = errors.New("chain: insufficient funds")
	ErrGas               = errors.New("chain: gas limit")
)

// TxError is a transaction the node refused. errors.Is matches both Kind
// and the node's error.
type TxError struct {
	Kind error // ErrNonce, ErrUnderpriced, ErrInsufficientFunds or ErrGas
	Err  error
}

func (e *TxError) Error() string   { return e.Kind.Error() + ": " + e.Err.Error() }
func (e *TxError) Unwrap() []error { return []error{e.Kind, e.Err} }

// Node error texts, by kind. Matched as text because JSON-RPC carries no types.
var txErrorKinds = []struct {
	kind  error
	texts []string
}{
	{ErrNonce, []string{"nonce too low", "nonce too high", "nonce has max value", "future transaction tries to replace pending"}},
	{ErrUnderpriced, []string{"underpriced", "less than block base fee", "gas price below minimum", "higher than max fee per gas", "txpool is full", "account limit exceeded"}},
	{ErrInsufficientFunds, []string{"insufficient funds"}},
	{ErrGas, []string{"intrinsic gas too low", "exceeds block gas limit", "gas limit reached", "gas limit too high", "floor data gas", "out of gas", "gas required exceeds"}},
}

// classify wraps a node's error from op, as a TxError if it is one.
func classify(op string, err error) error {
	msg := strings.ToLower(err.Error())
	for _, k := range txErrorKinds {
		for _, t := range k.texts {
			if strings.Contains(msg, t) {
				return &TxError{Kind: k.kind, Err: fmt.Errorf("%s: %w", op, err)}
			}
		}
	}
	return fmt.Errorf("chain: %s: %w", op, err)
}

// backend is the part of ethclient.Client the Anchorer uses; tests give it
// the simulated backend.
type backend interface {
	ethereum.ChainIDReader
	ethereum.ChainStateReader
	ethereum.ContractCaller
	ethereum.LogFilterer
	ethereum.PendingStateReader
	ethereum.GasEstimator
	ethereum.GasPricer1559
	ethereum.TransactionReader
	ethereum.TransactionSender
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
}

// Anchorer anchors epochs in one contract as one account. Its methods are
// safe for concurrent use; transactions are sent one at a time.
type Anchorer struct {
	be      backend
	close   func()
	key     *ecdsa.PrivateKey
	from    common.Address
	chainID *big.Int
	signer  types.Signer

	sendMu   sync.Mutex          // serializes sending
	inflight map[uint64]inflight // by epoch: anchor txs sent, not yet seen mined; under sendMu

	mu       sync.Mutex
	contract common.Address
}

type inflight struct {
	tx   common.Hash
	root [32]byte
}

// Dial connects to cfg.RPCURL and checks the chain id and, if configured,
// that cfg.Contract holds the anchor contract.
func Dial(ctx context.Context, cfg Config) (*Anchorer, error) {
	var key *ecdsa.PrivateKey
	if cfg.KeyFile != "" {
		var err error
		if key, err = LoadKeyFile(cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	c, err := ethclient.DialContext(ctx, cfg.RPCURL)
	if err != nil {
		return nil, fmt.Errorf("chain: dial %s: %w", cfg.RPCURL, err)
	}
	a, err := newAnchorer(ctx, c, key, cfg.ChainID, cfg.Contract)
	if err != nil {
		c.Close()
		return nil, err
	}
	a.close = c.Close
	return a, nil
}

func newAnchorer(ctx context.Context, be backend, key *ecdsa.PrivateKey, chainID uint64, contract string) (*Anchorer, error) {
	id, err := be.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("chain: chain id: %w", err)
	}
	if chainID != 0 && (!id.IsUint64() || id.Uint64() != chainID) {
		return nil, fmt.Errorf("chain: node is on chain %s, configured for %d", id, chainID)
	}
	a := &Anchorer{be: be, key: key, chainID: id, signer: types.LatestSignerForChainID(id), inflight: map[uint64]inflight{}}
	if key != nil {
		a.from = crypto.PubkeyToAddress(key.PublicKey)
	}
	if contract != "" {
		if !common.IsHexAddress(contract) {
			return nil, fmt.Errorf("chain: contract %q is not an address", contract)
		}
		a.contract = common.HexToAddress(contract)
		if err := a.checkContract(ctx, a.contract); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Anchorer) checkContract(ctx context.Context, addr common.Address) error {
	code, err := a.be.CodeAt(ctx, addr, nil)
	if err != nil {
		return fmt.Errorf("chain: code at %s: %w", addr, err)
	}
	if !isAnchorCode(code) {
		return fmt.Errorf("chain: %s does not hold the anchor contract (%d bytes of code)", addr, len(code))
	}
	return nil
}

// Close releases the connection.
func (a *Anchorer) Close() {
	if a.close != nil {
		a.close()
	}
}

// Account is the key's address (zero without a key).
func (a *Anchorer) Account() common.Address { return a.from }

// ChainID is the node's chain id.
func (a *Anchorer) ChainID() uint64 { return a.chainID.Uint64() }

// Contract is the anchor contract's address (zero before Deploy).
func (a *Anchorer) Contract() common.Address {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.contract
}

func (a *Anchorer) contractAddr() (common.Address, error) {
	c := a.Contract()
	if c == (common.Address{}) {
		return c, ErrNoContract
	}
	return c, nil
}

// Deploy creates a new anchor contract owned by the key's account, waits
// for it to be mined and uses it from then on. For dev setups: production
// deploys once and configures Config.Contract.
func (a *Anchorer) Deploy(ctx context.Context) (common.Address, error) {
	if a.key == nil {
		return common.Address{}, ErrNoKey
	}
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	tx, err := a.send(ctx, nil, creationCode, 0)
	if err != nil {
		return common.Address{}, err
	}
	r, err := a.wait(ctx, tx.Hash())
	if err != nil {
		return common.Address{}, err
	}
	if r.Status != types.ReceiptStatusSuccessful {
		return common.Address{}, fmt.Errorf("%w: deploy %s", ErrReverted, tx.Hash())
	}
	if err := a.checkContract(ctx, r.ContractAddress); err != nil {
		return common.Address{}, err
	}
	a.mu.Lock()
	a.contract = r.ContractAddress
	a.mu.Unlock()
	return r.ContractAddress, nil
}

// LastEpoch reads the contract's last anchored epoch (0 before any).
func (a *Anchorer) LastEpoch(ctx context.Context) (uint64, error) {
	v, err := a.call(ctx, "lastEpoch")
	if err != nil {
		return 0, err
	}
	n, ok := v.(*big.Int)
	if !ok || !n.IsUint64() {
		return 0, fmt.Errorf("chain: lastEpoch %v does not fit uint64", v)
	}
	return n.Uint64(), nil
}

// Owner reads the contract's owner, the only account that may anchor.
func (a *Anchorer) Owner(ctx context.Context) (common.Address, error) {
	v, err := a.call(ctx, "owner")
	if err != nil {
		return common.Address{}, err
	}
	addr, _ := v.(common.Address)
	return addr, nil
}

func (a *Anchorer) call(ctx context.Context, method string) (any, error) {
	to, err := a.contractAddr()
	if err != nil {
		return nil, err
	}
	data, err := ABI().Pack(method)
	if err != nil {
		return nil, err
	}
	out, err := a.be.CallContract(ctx, ethereum.CallMsg{From: a.from, To: &to, Data: data}, nil)
	if err != nil {
		return nil, fmt.Errorf("chain: %s: %w", method, err)
	}
	v, err := ABI().Unpack(method, out)
	if err != nil {
		return nil, fmt.Errorf("chain: %s: %w", method, err)
	}
	return v[0], nil
}

// RootOf reads the root anchored for epoch from its Anchored log, and where
// it was anchored. ErrNotAnchored if there is none.
func (a *Anchorer) RootOf(ctx context.Context, epoch uint64) ([32]byte, AnchorReceipt, error) {
	to, err := a.contractAddr()
	if err != nil {
		return [32]byte{}, AnchorReceipt{}, err
	}
	// From block 0: the contract address alone does not tell its deploy
	// block, and the indexed epoch topic keeps the query cheap.
	logs, err := a.be.FilterLogs(ctx, ethereum.FilterQuery{
		FromBlock: new(big.Int),
		Addresses: []common.Address{to},
		Topics:    [][]common.Hash{{AnchoredTopic}, {epochTopic(epoch)}},
	})
	if err != nil {
		return [32]byte{}, AnchorReceipt{}, fmt.Errorf("chain: logs of epoch %d: %w", epoch, err)
	}
	for _, l := range logs {
		if l.Removed || len(l.Data) != 32 {
			continue
		}
		// The contract emits at most one log per epoch.
		r, err := a.be.TransactionReceipt(ctx, l.TxHash)
		if err != nil {
			return [32]byte{}, AnchorReceipt{}, fmt.Errorf("chain: receipt of %s: %w", l.TxHash, err)
		}
		return [32]byte(l.Data), AnchorReceipt{TxHash: l.TxHash, BlockNumber: l.BlockNumber, GasUsed: r.GasUsed}, nil
	}
	return [32]byte{}, AnchorReceipt{}, fmt.Errorf("%w: epoch %d", ErrNotAnchored, epoch)
}

// Anchor records root as epoch's root and waits for the transaction to be
// mined. It is safe to retry: if the epoch is already anchored with this
// root (by an earlier call or an earlier process) it returns that anchor;
// with another root it returns ErrRootMismatch. A call cut short by ctx
// leaves its transaction in flight, and the retry waits for it rather than
// sending another. Refusals by the node come back as *TxError.
func (a *Anchorer) Anchor(ctx context.Context, epoch uint64, root [32]byte) (AnchorReceipt, error) {
	if a.key == nil {
		return AnchorReceipt{}, ErrNoKey
	}
	if epoch == 0 {
		return AnchorReceipt{}, fmt.Errorf("%w: epochs start at 1", ErrStaleEpoch)
	}
	to, err := a.contractAddr()
	if err != nil {
		return AnchorReceipt{}, err
	}
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	for {
		if p, ok := a.inflight[epoch]; ok {
			r, err := a.wait(ctx, p.tx)
			if err != nil && !errors.Is(err, errDropped) {
				return AnchorReceipt{}, err
			}
			delete(a.inflight, epoch)
			if err == nil && p.root == root {
				return a.settle(ctx, epoch, root, r)
			}
			// Dropped, or it anchored another root (the check below says).
		}
		if rc, err := a.existing(ctx, epoch, root); !errors.Is(err, ErrNotAnchored) {
			return rc, err
		}
		tx, err := a.send(ctx, &to, packAnchor(epoch, root), epoch)
		if err != nil {
			return AnchorReceipt{}, err
		}
		a.inflight[epoch] = inflight{tx.Hash(), root}
	}
}

// existing returns the epoch's anchor if it has this root, ErrRootMismatch
// if it has another, ErrNotAnchored if it has none.
func (a *Anchorer) existing(ctx context.Context, epoch uint64, root [32]byte) (AnchorReceipt, error) {
	have, rc, err := a.RootOf(ctx, epoch)
	switch {
	case err != nil:
		return AnchorReceipt{}, err
	case have != root:
		return rc, fmt.Errorf("%w: epoch %d has %x, not %x", ErrRootMismatch, epoch, have, root)
	}
	return rc, nil
}

// settle interprets the mined receipt of an anchor transaction. A revert
// can still mean success: another call anchored the same root first.
func (a *Anchorer) settle(ctx context.Context, epoch uint64, root [32]byte, r *types.Receipt) (AnchorReceipt, error) {
	if r.Status == types.ReceiptStatusSuccessful {
		return AnchorReceipt{TxHash: r.TxHash, BlockNumber: r.BlockNumber.Uint64(), GasUsed: r.GasUsed}, nil
	}
	rc, err := a.existing(ctx, epoch, root)
	if !errors.Is(err, ErrNotAnchored) {
		return rc, err
	}
	if last, lerr := a.LastEpoch(ctx); lerr == nil && last >= epoch {
		return AnchorReceipt{}, fmt.Errorf("%w: epoch %d, contract is at %d", ErrStaleEpoch, epoch, last)
	}
	return AnchorReceipt{}, fmt.Errorf("%w: anchor epoch %d: %s", ErrReverted, epoch, r.TxHash)
}

// send signs and submits a transaction to (nil: contract creation).
func (a *Anchorer) send(ctx context.Context, to *common.Address, data []byte, epoch uint64) (*types.Transaction, error) {
	gas, err := a.be.EstimateGas(ctx, ethereum.CallMsg{From: a.from, To: to, Data: data})
	if err != nil {
		if rerr := revertError(err, epoch); rerr != err {
			return nil, rerr
		}
		return nil, classify("estimate gas", err)
	}
	gas += gas / 5 // slack for state changing before inclusion; unused gas is not charged
	tip, err := a.be.SuggestGasTipCap(ctx)
	if err != nil {
		return nil, fmt.Errorf("chain: gas tip: %w", err)
	}
	head, err := a.be.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("chain: head: %w", err)
	}
	if head.BaseFee == nil {
		return nil, errors.New("chain: the chain has no base fee (before London)")
	}
	feeCap := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2))) // room for base fee rises
	nonce, err := a.be.PendingNonceAt(ctx, a.from)
	if err != nil {
		return nil, fmt.Errorf("chain: nonce: %w", err)
	}
	tx, err := types.SignNewTx(a.key, a.signer, &types.DynamicFeeTx{
		ChainID: a.chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap, Gas: gas, To: to, Data: data,
	})
	if err != nil {
		return nil, err
	}
	if err := a.be.SendTransaction(ctx, tx); err != nil && !strings.Contains(err.Error(), "already known") {
		return nil, classify("send", err)
	}
	return tx, nil
}

var errDropped = errors.New("chain: transaction dropped from the pool")

// wait polls for the receipt of tx. errDropped if the node no longer knows
// the transaction at all.
func (a *Anchorer) wait(ctx context.Context, tx common.Hash) (*types.Receipt, error) {
	delay := 20 * time.Millisecond
	for i := 1; ; i++ {
		r, err := a.be.TransactionReceipt(ctx, tx)
		switch {
		case err == nil:
			return r, nil
		case errors.Is(err, ethereum.NotFound) || strings.Contains(err.Error(), "indexing is in progress"):
		default:
			return nil, fmt.Errorf("chain: receipt of %s: %w", tx, err)
		}
		if i%10 == 0 {
			if _, _, err := a.be.TransactionByHash(ctx, tx); errors.Is(err, ethereum.NotFound) {
				return nil, fmt.Errorf("%w: %s", errDropped, tx)
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}
