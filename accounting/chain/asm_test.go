package chain

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

var updateBin = flag.Bool("update", false, "rewrite anchor.bin from anchor.asm")

// opcodes used by anchor.asm.
var opcodes = map[string]byte{
	"STOP": 0x00, "ADD": 0x01, "SUB": 0x03, "LT": 0x10, "GT": 0x11, "EQ": 0x14, "ISZERO": 0x15, "NOT": 0x19,
	"SHL": 0x1b, "SHR": 0x1c, "CALLER": 0x33, "CALLVALUE": 0x34, "CALLDATALOAD": 0x35,
	"CALLDATASIZE": 0x36, "CODESIZE": 0x38, "CODECOPY": 0x39, "POP": 0x50, "MLOAD": 0x51,
	"MSTORE": 0x52, "SLOAD": 0x54, "SSTORE": 0x55, "JUMPI": 0x57, "JUMPDEST": 0x5b,
	"DUP1": 0x80, "DUP2": 0x81, "DUP3": 0x82, "LOG2": 0xa2, "RETURN": 0xf3, "REVERT": 0xfd,
}

type asmInstr struct {
	op  byte
	n   int    // PUSHn operand size
	arg string // operand: hex, label, runtime.start or runtime.size
}

type asmSection struct {
	name   string
	code   []asmInstr
	labels map[string]int
	size   int
}

// assemble is the two-pass assembler for anchor.asm's syntax.
func assemble(src string) ([]byte, error) {
	var secs []*asmSection
	sc := bufio.NewScanner(strings.NewReader(src))
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		if i := strings.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case f[0] == "section" && len(f) == 2:
			secs = append(secs, &asmSection{name: f[1], labels: map[string]int{}})
			continue
		case len(secs) == 0:
			return nil, fmt.Errorf("line %d: outside a section", ln)
		}
		s := secs[len(secs)-1]
		if len(f) == 1 && strings.HasSuffix(f[0], ":") {
			s.labels[strings.TrimSuffix(f[0], ":")] = s.size
			continue
		}
		if n, ok := strings.CutPrefix(f[0], "PUSH"); ok {
			size, err := strconv.Atoi(n)
			if err != nil || size < 1 || size > 32 || len(f) != 2 {
				return nil, fmt.Errorf("line %d: bad push %q", ln, line)
			}
			s.code = append(s.code, asmInstr{op: 0x5f + byte(size), n: size, arg: f[1]})
			s.size += 1 + size
			continue
		}
		op, ok := opcodes[f[0]]
		if !ok || len(f) != 1 {
			return nil, fmt.Errorf("line %d: unknown instruction %q", ln, line)
		}
		s.code = append(s.code, asmInstr{op: op})
		s.size++
	}
	starts := map[string]int{}
	total := 0
	for _, s := range secs {
		starts[s.name] = total
		total += s.size
	}
	var out []byte
	for _, s := range secs {
		for _, in := range s.code {
			out = append(out, in.op)
			if in.n == 0 {
				continue
			}
			var v *big.Int
			name, field, _ := strings.Cut(in.arg, ".")
			switch {
			case strings.HasPrefix(in.arg, "0x"):
				b, err := hex.DecodeString(in.arg[2:])
				if err != nil {
					return nil, err
				}
				v = new(big.Int).SetBytes(b)
			case field == "start":
				v = big.NewInt(int64(starts[name]))
			case field == "size":
				for _, t := range secs {
					if t.name == name {
						v = big.NewInt(int64(t.size))
					}
				}
			default:
				if off, ok := s.labels[in.arg]; ok {
					v = big.NewInt(int64(off))
				}
			}
			if v == nil {
				return nil, fmt.Errorf("undefined operand %q", in.arg)
			}
			if v.BitLen() > 8*in.n {
				return nil, fmt.Errorf("operand %q does not fit PUSH%d", in.arg, in.n)
			}
			out = append(out, v.FillBytes(make([]byte, in.n))...)
		}
	}
	return out, nil
}

// TestAssembly checks anchor.bin against anchor.asm and the selectors and
// topic written into the assembly against their signatures.
func TestAssembly(t *testing.T) {
	src, err := os.ReadFile("anchor.asm")
	if err != nil {
		t.Fatal(err)
	}
	code, err := assemble(string(src))
	if err != nil {
		t.Fatal(err)
	}
	if *updateBin {
		if err := os.WriteFile("anchor.bin", []byte(hex.EncodeToString(code)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// The embedded copy is the old one until the next build: check
		// the rest against what was just written.
		creationCode = code
	}
	if got, want := hex.EncodeToString(code), hex.EncodeToString(creationCode); got != want {
		t.Fatalf("anchor.bin is stale (go test -run TestAssembly -update); anchor.asm assembles to\n%s", got)
	}
	if creationCode[runtimeStartOperand-1] != 0x60 || int(creationCode[runtimeStartOperand]) != len(creationCode)-len(runtimeCode) {
		t.Fatal("runtimeStartOperand does not point at PUSH1 runtime.start")
	}
	for sig, want := range map[string]string{
		"anchor(uint256,bytes32)": "0xa0ca2d08", "lastEpoch()": "0x06a4c983", "owner()": "0x8da5cb5b",
		"NotOwner()": "0x30cd7471", "StaleEpoch(uint256)": "0xc6a07706",
		"Anchored(uint256,bytes32)": "0x" + hex.EncodeToString(AnchoredTopic[:]),
	} {
		h := crypto.Keccak256([]byte(sig))
		if !strings.Contains(string(src), want) || !strings.HasPrefix(hex.EncodeToString(h), want[2:]) {
			t.Errorf("%s: keccak %x, assembly uses %s", sig, h, want)
		}
	}
	if id := ABI().Events["Anchored"].ID; id != AnchoredTopic {
		t.Errorf("AnchoredTopic %x, the ABI's Anchored event %x", AnchoredTopic, id)
	}
	for name, m := range ABI().Methods {
		if !strings.Contains(string(src), fmt.Sprintf("0x%x", m.ID)) {
			t.Errorf("method %s (%x) not dispatched in anchor.asm", name, m.ID)
		}
	}
	t.Logf("creation code %d bytes, runtime %d bytes (+20 owner)", len(creationCode), len(runtimeCode))
}
