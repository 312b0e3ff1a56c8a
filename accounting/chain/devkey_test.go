package chain

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stockade-hpc/stockade/accounting/chain/chaintest"
)

// TestSeedDevKey: a seeded key becomes the funded dev account; a second
// seed of it is a no-op, another key is refused.
func TestSeedDevKey(t *testing.T) {
	geth := chaintest.Geth(t)
	keys := t.TempDir()
	key, other := filepath.Join(keys, "a.key"), filepath.Join(keys, "b.key")
	account, err := GenerateKeyFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "chain")
	if err := SeedDevKey(dir, key); err != nil {
		t.Fatal(err)
	}
	d := startDev(t, geth, dir)
	if d.Account() != account {
		t.Fatalf("dev account %s, want the seeded %s", d.Account(), account)
	}
	if accounts, err := keystoreAccounts(dir); err != nil || len(accounts) != 1 || accounts[0] != account {
		t.Fatalf("keystore accounts %v, %v; want the seeded %s", accounts, err, account)
	}
	a, err := Dial(context.Background(), d.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Deploy(context.Background()); err != nil {
		t.Fatalf("deploy as the seeded account: %v", err)
	}
	if err := SeedDevKey(dir, key); err != nil {
		t.Errorf("seeding the same key again: %v", err)
	}
	if err := SeedDevKey(dir, other); err == nil {
		t.Error("seeding another key over the dev key succeeded")
	}
}
