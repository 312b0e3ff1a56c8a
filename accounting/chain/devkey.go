package chain

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ethereum/go-ethereum/crypto"
)

// SeedDevKey makes the key in keyFile the dev account of a dev chain on
// dataDir. Copied there before the chain's first start, it is what
// StartDevChain imports into geth's keystore and geth's genesis funds, so
// a cluster anchors with its own key rather than one the chain made up. A
// directory that already has a dev key, or a keystore account, must hold
// this one: the genesis of its chain funded that key and no other.
func SeedDevKey(dataDir, keyFile string) error {
	want, err := LoadKeyFile(keyFile)
	if err != nil {
		return err
	}
	if _, err := checkKeystore(dataDir, crypto.PubkeyToAddress(want.PublicKey)); err != nil {
		return err
	}
	path := filepath.Join(dataDir, devKeyFile)
	have, err := LoadKeyFile(path)
	switch {
	case err == nil && have.Equal(want):
		return nil
	case err == nil:
		return fmt.Errorf("chain: %s holds another dev key than %s", path, keyFile)
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if err := writeFile0600(path, hex.EncodeToString(crypto.FromECDSA(want))+"\n"); err != nil {
		return fmt.Errorf("chain: dev key: %w", err)
	}
	return nil
}
