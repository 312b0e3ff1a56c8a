package chain

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
)

// The anchor contract, hand-assembled from anchor.asm (see there for the
// layout and the gas reasoning); TestAssembly keeps the three files in step.
var (
	//go:embed anchor.bin
	creationHex string
	//go:embed anchor.abi.json
	abiJSON string

	// ABI is the anchor contract's interface, for callers that build their
	// own transactions or decode its logs. Parsed on first use: every
	// process of the one binary (each sbatch) would pay for it at start.
	ABI = sync.OnceValue(func() *abi.ABI { a := mustABI(abiJSON); return &a })
	// AnchoredTopic is topic 0 of every Anchored(uint256 indexed, bytes32)
	// log (TestAssembly checks it against the ABI).
	AnchoredTopic = crypto.Keccak256Hash([]byte("Anchored(uint256,bytes32)"))

	creationCode = mustHex(creationHex)
	// runtimeCode is what the constructor installs, less the owner's 20
	// bytes it appends.
	runtimeCode = creationCode[creationCode[runtimeStartOperand]:]
)

// runtimeStartOperand is the offset of the constructor's PUSH1 runtime.start
// operand (TestAssembly checks it).
const runtimeStartOperand = 14

// CreationCode returns the bytecode Deploy sends.
func CreationCode() []byte { return bytes.Clone(creationCode) }

func mustABI(s string) abi.ABI {
	a, err := abi.JSON(strings.NewReader(s))
	if err != nil {
		panic(err)
	}
	return a
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		panic(err)
	}
	return b
}

// isAnchorCode reports whether code is what the constructor left: the
// runtime followed by an owner address.
func isAnchorCode(code []byte) bool {
	return len(code) == len(runtimeCode)+common.AddressLength && bytes.Equal(code[:len(runtimeCode)], runtimeCode)
}

func packAnchor(epoch uint64, root [32]byte) []byte {
	b, err := ABI().Pack("anchor", new(big.Int).SetUint64(epoch), root)
	if err != nil {
		panic(err) // fixed types: cannot fail
	}
	return b
}

func epochTopic(epoch uint64) common.Hash {
	return common.BigToHash(new(big.Int).SetUint64(epoch))
}

// revertError turns the contract's custom errors, carried as JSON-RPC error
// data, into this package's errors; other errors come back unchanged.
func revertError(err error, epoch uint64) error {
	var de rpc.DataError
	if !errors.As(err, &de) {
		return err
	}
	s, ok := de.ErrorData().(string)
	if !ok {
		return err
	}
	data, derr := hexutil.Decode(s)
	if derr != nil || len(data) < 4 {
		return err
	}
	e, lerr := ABI().ErrorByID([4]byte(data[:4]))
	if lerr != nil {
		return err
	}
	switch e.Name {
	case "NotOwner":
		return ErrNotOwner
	case "StaleEpoch":
		v, uerr := e.Unpack(data)
		if uerr != nil {
			return err
		}
		if vs, ok := v.([]any); ok && len(vs) == 1 {
			if last, ok := vs[0].(*big.Int); ok {
				return fmt.Errorf("%w: epoch %d, contract is at %s", ErrStaleEpoch, epoch, last)
			}
		}
	}
	return err
}
