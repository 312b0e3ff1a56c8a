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
// dataDir. Copied there before the chain's first start, it is what the
// genesis funds, so a cluster anchors with its own key rather than one the
// chain made up. A directory that already has a dev key must hold this
// one: the genesis of its chain funded that key and no other.
func SeedDevKey(dataDir, keyFile string) error {
	want, err := LoadKeyFile(keyFile)
	if err != nil {
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
	tmp := path + ".tmp"
	os.Remove(tmp) // left by a crash: O_EXCL below would refuse it
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("chain: dev key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(crypto.FromECDSA(want)) + "\n")
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("chain: dev key: %w", err)
	}
	return os.Rename(tmp, path)
}
