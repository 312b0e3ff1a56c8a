package chain

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/params"
)

var ether = new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)

// simChain is a simulated backend with funded accounts; blocks are sealed
// only by Commit.
type simChain struct {
	t       *testing.T
	b       *simulated.Backend
	c       simulated.Client
	chainID *big.Int
}

func newSimChain(t *testing.T, config *params.ChainConfig, keys ...*ecdsa.PrivateKey) *simChain {
	t.Helper()
	alloc := types.GenesisAlloc{}
	for _, k := range keys {
		alloc[crypto.PubkeyToAddress(k.PublicKey)] = types.Account{Balance: new(big.Int).Mul(big.NewInt(100), ether)}
	}
	b := simulated.NewBackend(alloc, func(_ *node.Config, ec *ethconfig.Config) { ec.Genesis.Config = config })
	t.Cleanup(func() { b.Close() })
	id, err := b.Client().ChainID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &simChain{t: t, b: b, c: b.Client(), chainID: id}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tx sends a transaction with a fixed gas limit (no estimation, so reverts
// get mined), seals a block and returns the receipt.
func (s *simChain) tx(key *ecdsa.PrivateKey, to *common.Address, value *big.Int, data []byte) *types.Receipt {
	s.t.Helper()
	ctx := context.Background()
	from := crypto.PubkeyToAddress(key.PublicKey)
	nonce, err := s.c.PendingNonceAt(ctx, from)
	if err != nil {
		s.t.Fatal(err)
	}
	head, err := s.c.HeaderByNumber(ctx, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	tip, err := s.c.SuggestGasTipCap(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	tx := types.MustSignNewTx(key, types.LatestSignerForChainID(s.chainID), &types.DynamicFeeTx{
		ChainID: s.chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2))),
		Gas: 300_000, To: to, Value: value, Data: data,
	})
	if err := s.c.SendTransaction(ctx, tx); err != nil {
		s.t.Fatal(err)
	}
	s.b.Commit()
	return s.receipt(tx.Hash())
}

// receipt waits out the simulated node's transaction indexer.
func (s *simChain) receipt(h common.Hash) *types.Receipt {
	s.t.Helper()
	for i := 0; ; i++ {
		r, err := s.c.TransactionReceipt(context.Background(), h)
		if err == nil {
			return r
		}
		if i == 500 || !strings.Contains(err.Error(), "indexing is in progress") {
			s.t.Fatalf("receipt of %s: %v", h, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *simChain) deploy(owner *ecdsa.PrivateKey) common.Address {
	s.t.Helper()
	r := s.tx(owner, nil, nil, creationCode)
	if r.Status != types.ReceiptStatusSuccessful {
		s.t.Fatalf("deploy failed: %+v", r)
	}
	s.t.Logf("deploy: %d gas, contract %s", r.GasUsed, r.ContractAddress)
	return r.ContractAddress
}

// call does eth_call and maps the contract's revert data as Anchor would.
func (s *simChain) call(from common.Address, to common.Address, data []byte) ([]byte, error) {
	out, err := s.c.CallContract(context.Background(), ethereum.CallMsg{From: from, To: &to, Data: data}, nil)
	if err != nil {
		return nil, revertError(err, 0)
	}
	return out, nil
}

func rootOfRecords(n int) [32]byte {
	// Stand-in for an epoch's Merkle root over n usage records: whatever n,
	// the contract sees 32 bytes.
	h := sha256.New()
	var b [8]byte
	for i := range n {
		binary.BigEndian.PutUint64(b[:], uint64(i))
		h.Write(b[:])
	}
	return [32]byte(h.Sum(nil))
}

func TestContract(t *testing.T) {
	owner, other := newKey(t), newKey(t)
	ownerAddr := crypto.PubkeyToAddress(owner.PublicKey)
	s := newSimChain(t, params.AllDevChainProtocolChanges, owner, other)
	c := s.deploy(owner)

	code, err := s.c.CodeAt(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !isAnchorCode(code) || common.BytesToAddress(code[len(code)-20:]) != ownerAddr {
		t.Fatalf("installed code %x is not runtime ++ owner", code)
	}
	ownerOut, _ := ABI().Pack("owner")
	if out, err := s.call(ownerAddr, c, ownerOut); err != nil || common.BytesToAddress(out) != ownerAddr || len(out) != 32 {
		t.Fatalf("owner() = %x, %v; want %s", out, err, ownerAddr)
	}
	lastEpoch := func() uint64 {
		t.Helper()
		in, _ := ABI().Pack("lastEpoch")
		out, err := s.call(ownerAddr, c, in)
		if err != nil || len(out) != 32 {
			t.Fatalf("lastEpoch() = %x, %v", out, err)
		}
		return new(big.Int).SetBytes(out).Uint64()
	}
	if n := lastEpoch(); n != 0 {
		t.Fatalf("lastEpoch before any anchor = %d", n)
	}

	// The owner anchors 1, 2, 3; each log carries (epoch, root).
	for epoch := uint64(1); epoch <= 3; epoch++ {
		root := rootOfRecords(int(epoch))
		r := s.tx(owner, &c, nil, packAnchor(epoch, root))
		if r.Status != types.ReceiptStatusSuccessful || len(r.Logs) != 1 {
			t.Fatalf("anchor %d: status %d, %d logs", epoch, r.Status, len(r.Logs))
		}
		l := r.Logs[0]
		if l.Address != c || len(l.Topics) != 2 || l.Topics[0] != AnchoredTopic || l.Topics[1] != epochTopic(epoch) || [32]byte(l.Data) != root {
			t.Fatalf("anchor %d: log %+v", epoch, l)
		}
		ev, err := ABI().Unpack("Anchored", l.Data)
		if err != nil || ev[0].([32]byte) != root {
			t.Fatalf("ABI decode of the log: %v %v", ev, err)
		}
		if n := lastEpoch(); n != epoch {
			t.Fatalf("lastEpoch = %d after anchoring %d", n, epoch)
		}
	}

	// Others may not anchor, even a fresh epoch.
	if _, err := s.call(crypto.PubkeyToAddress(other.PublicKey), c, packAnchor(4, [32]byte{4})); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("non-owner call: %v, want ErrNotOwner", err)
	}
	if r := s.tx(other, &c, nil, packAnchor(4, [32]byte{4})); r.Status != types.ReceiptStatusFailed || len(r.Logs) != 0 {
		t.Fatalf("non-owner anchor mined with status %d", r.Status)
	}
	// Epochs must increase: 3 again, 2, and the unset 0 all revert.
	for _, epoch := range []uint64{3, 2, 0} {
		_, err := s.call(ownerAddr, c, packAnchor(epoch, [32]byte{9}))
		if !errors.Is(err, ErrStaleEpoch) || !strings.Contains(err.Error(), "contract is at 3") {
			t.Fatalf("anchor %d: %v, want ErrStaleEpoch at 3", epoch, err)
		}
		if r := s.tx(owner, &c, nil, packAnchor(epoch, [32]byte{9})); r.Status != types.ReceiptStatusFailed {
			t.Fatalf("stale anchor %d mined with status %d", epoch, r.Status)
		}
	}
	// Ether, unknown selectors and short calldata revert.
	for name, r := range map[string]*types.Receipt{
		"value":    s.tx(owner, &c, big.NewInt(1), packAnchor(10, [32]byte{1})),
		"empty":    s.tx(owner, &c, nil, nil),
		"selector": s.tx(owner, &c, nil, []byte{1, 2, 3, 4}),
		"short":    s.tx(owner, &c, nil, packAnchor(10, [32]byte{1})[:40]),
	} {
		if r.Status != types.ReceiptStatusFailed {
			t.Errorf("%s: mined with status %d", name, r.Status)
		}
	}
	if n := lastEpoch(); n != 3 {
		t.Fatalf("lastEpoch = %d after failed anchors", n)
	}
}

// TestAnchorGas: an anchor's gas depends only on its calldata bytes, never
// on how many records the epoch's root covers, and the first anchor costs
// what the others do (the constructor created the slot). Measured under the
// dev chain's fork rules (the newest: EIP-8037/8038 storage repricing) and
// under Osaka's, today's mainnet.
func TestAnchorGas(t *testing.T) {
	osaka := *params.AllDevChainProtocolChanges
	osaka.BogotaTime = nil
	for _, fork := range []struct {
		name   string
		config *params.ChainConfig
	}{{"dev", params.AllDevChainProtocolChanges}, {"osaka", &osaka}} {
		t.Run(fork.name, func(t *testing.T) {
			owner := newKey(t)
			from := crypto.PubkeyToAddress(owner.PublicKey)
			s := newSimChain(t, fork.config, owner)
			c := s.deploy(owner)
			head, _ := s.c.HeaderByNumber(context.Background(), nil)
			rules := fork.config.Rules(head.Number, true, head.Time)
			var exec uint64
			for i, records := range []int{1, 10, 1_000, 100_000, 1_000_000} {
				epoch := uint64(i + 1)
				data := packAnchor(epoch, rootOfRecords(records))
				r := s.tx(owner, &c, nil, data)
				if r.Status != types.ReceiptStatusSuccessful {
					t.Fatalf("anchor %d failed", epoch)
				}
				intrinsic, err := core.IntrinsicGas(data, nil, nil, from, &c, nil, rules)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("epoch %d, %7d records: %d gas (intrinsic with calldata %d, execution %d)", epoch, records, r.GasUsed, intrinsic, r.GasUsed-intrinsic)
				if i == 0 {
					exec = r.GasUsed - intrinsic
				} else if r.GasUsed-intrinsic != exec {
					t.Errorf("epoch %d: execution gas %d, epoch 1 took %d", epoch, r.GasUsed-intrinsic, exec)
				}
			}
		})
	}
}
