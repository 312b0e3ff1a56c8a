package chain

import (
	"context"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
)

// autoCommit seals a block every few milliseconds, as a dev chain would.
func (s *simChain) autoCommit(t *testing.T) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				s.b.Commit()
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func TestAnchorer(t *testing.T) {
	ctx := context.Background()
	owner, other := newKey(t), newKey(t)
	s := newSimChain(t, params.AllDevChainProtocolChanges, owner, other)
	s.autoCommit(t)

	a, err := newAnchorer(ctx, s.c, owner, 1337, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.LastEpoch(ctx); !errors.Is(err, ErrNoContract) {
		t.Fatalf("LastEpoch before Deploy: %v", err)
	}
	addr, err := a.Deploy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := a.Owner(ctx); err != nil || o != a.Account() {
		t.Fatalf("Owner = %s, %v; want %s", o, err, a.Account())
	}
	if n, err := a.LastEpoch(ctx); err != nil || n != 0 {
		t.Fatalf("LastEpoch = %d, %v", n, err)
	}

	roots := map[uint64][32]byte{1: rootOfRecords(1), 2: rootOfRecords(2), 5: rootOfRecords(5)}
	receipts := map[uint64]AnchorReceipt{}
	for _, e := range []uint64{1, 2, 5} { // skipping epochs is allowed
		rc, err := a.Anchor(ctx, e, roots[e])
		if err != nil {
			t.Fatalf("Anchor(%d): %v", e, err)
		}
		if rc.GasUsed == 0 || rc.BlockNumber == 0 || rc.TxHash == (common.Hash{}) {
			t.Fatalf("Anchor(%d) receipt %+v", e, rc)
		}
		receipts[e] = rc
	}
	if n, err := a.LastEpoch(ctx); err != nil || n != 5 {
		t.Fatalf("LastEpoch = %d, %v", n, err)
	}
	for e, want := range roots {
		root, rc, err := a.RootOf(ctx, e)
		if err != nil || root != want || rc != receipts[e] {
			t.Fatalf("RootOf(%d) = %x %+v %v; want %x %+v", e, root, rc, err, want, receipts[e])
		}
	}
	if _, _, err := a.RootOf(ctx, 3); !errors.Is(err, ErrNotAnchored) {
		t.Fatalf("RootOf(3): %v", err)
	}

	// Retrying an anchor returns the original without a new transaction.
	nonce, _ := s.c.NonceAt(ctx, a.Account(), nil)
	if rc, err := a.Anchor(ctx, 2, roots[2]); err != nil || rc != receipts[2] {
		t.Fatalf("retried Anchor(2) = %+v, %v; want %+v", rc, err, receipts[2])
	}
	if n, _ := s.c.NonceAt(ctx, a.Account(), nil); n != nonce {
		t.Fatalf("retry sent a transaction (nonce %d -> %d)", nonce, n)
	}
	// Another root for an anchored epoch; an epoch behind the contract.
	if _, err := a.Anchor(ctx, 2, [32]byte{1}); !errors.Is(err, ErrRootMismatch) {
		t.Fatalf("Anchor(2, other root): %v", err)
	}
	if _, err := a.Anchor(ctx, 3, [32]byte{1}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("Anchor(3) after 5: %v", err)
	}
	if _, err := a.Anchor(ctx, 0, [32]byte{1}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("Anchor(0): %v", err)
	}

	// A second process: another key is refused, the same key resumes.
	b, err := newAnchorer(ctx, s.c, other, 0, addr.Hex())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Anchor(ctx, 6, [32]byte{6}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("non-owner Anchor: %v", err)
	}
	ro, err := newAnchorer(ctx, s.c, nil, 0, addr.Hex())
	if err != nil {
		t.Fatal(err)
	}
	if root, _, err := ro.RootOf(ctx, 5); err != nil || root != roots[5] {
		t.Fatalf("read-only RootOf(5) = %x, %v", root, err)
	}
	if _, err := ro.Anchor(ctx, 6, [32]byte{6}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("read-only Anchor: %v", err)
	}

	// Dialling checks the chain id and the contract's code.
	if _, err := newAnchorer(ctx, s.c, owner, 1, addr.Hex()); err == nil {
		t.Fatal("wrong chain id accepted")
	}
	if _, err := newAnchorer(ctx, s.c, owner, 0, a.Account().Hex()); err == nil {
		t.Fatal("an account without code accepted as the contract")
	}
}

// TestAnchorRetryInFlight: an Anchor cut short while its transaction is
// pending leaves it in flight; the retry waits for it instead of sending a
// second one. Two processes with the same key racing on one epoch both
// end up with the one anchor.
func TestAnchorRetryInFlight(t *testing.T) {
	ctx := context.Background()
	owner := newKey(t)
	s := newSimChain(t, params.AllDevChainProtocolChanges, owner)
	stop := s.autoCommit(t)
	a, err := newAnchorer(ctx, s.c, owner, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := a.Deploy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop() // no more blocks: the next anchor stays pending

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := a.Anchor(short, 1, [32]byte{1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Anchor with no blocks: %v", err)
	}
	nonce, _ := s.c.PendingNonceAt(ctx, a.Account())
	stop = s.autoCommit(t)
	rc, err := a.Anchor(ctx, 1, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.c.NonceAt(ctx, a.Account(), nil); n != nonce {
		t.Fatalf("retry sent another transaction: nonce %d, want %d", n, nonce)
	}
	if _, got, err := a.RootOf(ctx, 1); err != nil || got != rc {
		t.Fatalf("RootOf(1) = %+v, %v; Anchor returned %+v", got, err, rc)
	}

	// Same key in two anchorers (say, a controller restarted mid-anchor
	// while the old one still runs): both report the single anchor.
	b, err := newAnchorer(ctx, s.c, owner, 0, addr.Hex())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]AnchorReceipt, 2)
	for i, x := range []*Anchorer{a, b} {
		wg.Go(func() {
			for {
				rc, err := x.Anchor(ctx, 2, [32]byte{2})
				var txErr *TxError
				if errors.As(err, &txErr) {
					time.Sleep(10 * time.Millisecond) // back off, as a caller would
					continue
				}
				if err != nil {
					t.Errorf("anchorer %d: %v", i, err)
				}
				got[i] = rc
				return
			}
		})
	}
	wg.Wait()
	if got[0] != got[1] {
		t.Fatalf("racing anchors disagree: %+v vs %+v", got[0], got[1])
	}

	// A retry with another root than the call cut short: the pending
	// transaction wins and the retry is told so.
	stop()
	short, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := a.Anchor(short, 3, [32]byte{3}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Anchor with no blocks: %v", err)
	}
	s.autoCommit(t)
	if _, err := a.Anchor(ctx, 3, [32]byte{33}); !errors.Is(err, ErrRootMismatch) {
		t.Fatalf("retry with another root: %v", err)
	}
}

// TestTxErrors: what the node says when it refuses a transaction comes
// back as a TxError of the right kind.
func TestTxErrors(t *testing.T) {
	ctx := context.Background()
	owner, poor := newKey(t), newKey(t)
	s := newSimChain(t, params.AllDevChainProtocolChanges, owner)
	s.autoCommit(t)

	a, err := newAnchorer(ctx, s.c, poor, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Deploy(ctx); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("Deploy from an empty account: %v", err)
	}

	from := crypto.PubkeyToAddress(owner.PublicKey)
	tip, err := s.c.SuggestGasTipCap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(nonce uint64, feeCap *big.Int, value int64) error {
		tipCap := tip
		if tipCap.Cmp(feeCap) > 0 {
			tipCap = feeCap
		}
		tx := types.MustSignNewTx(owner, types.LatestSignerForChainID(s.chainID), &types.DynamicFeeTx{
			ChainID: s.chainID, Nonce: nonce, GasTipCap: tipCap, GasFeeCap: feeCap, Gas: 21_000, To: &from, Value: big.NewInt(value),
		})
		if err := s.c.SendTransaction(ctx, tx); err != nil {
			return classify("send", err)
		}
		return nil
	}
	fee := new(big.Int).Add(tip, big.NewInt(2*params.GWei))
	if err := send(0, fee, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; func() bool { n, _ := s.c.NonceAt(ctx, from, nil); return n == 0 }(); i++ {
		if i == 1000 {
			t.Fatal("transaction not mined")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Another transaction with the used nonce. Until the pool catches up
	// with the block it is a replacement without a fee bump.
	err = send(0, fee, 1)
	for i := 0; errors.Is(err, ErrUnderpriced) && i < 1000; i++ {
		time.Sleep(5 * time.Millisecond)
		err = send(0, fee, 1)
	}
	if !errors.Is(err, ErrNonce) {
		t.Fatalf("reused nonce: %v", err)
	}
	if err := send(1, new(big.Int), 0); !errors.Is(err, ErrUnderpriced) {
		t.Fatalf("zero fees: %v", err)
	}
	var txErr *TxError
	if err := send(1, new(big.Int), 0); !errors.As(err, &txErr) || txErr.Err == nil {
		t.Fatalf("not a *TxError: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "anchor.key")
	addr, err := GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	key, err := LoadKeyFile(path)
	if err != nil || crypto.PubkeyToAddress(key.PublicKey) != addr {
		t.Fatalf("LoadKeyFile: %v", err)
	}
	if _, err := GenerateKeyFile(path); err == nil {
		t.Fatal("GenerateKeyFile overwrote a key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); err == nil {
		t.Fatal("LoadKeyFile accepted a world-readable key")
	}
}
