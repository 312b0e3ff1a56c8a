package attest_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
)

// TestVerifyTPM2ToolsQuote makes quotes with tpm2-tools against a real
// swtpm and checks them offline.
func TestVerifyTPM2ToolsQuote(t *testing.T) {
	attesttest.VerifierRequireTools(t, "swtpm", "tpm2_createek", "tpm2_createak", "tpm2_quote", "tpm2_pcrextend", "tpm2_flushcontext")
	tpm := attesttest.StartVerifierSwtpm(t)
	dir := t.TempDir()
	run := func(tb testing.TB, program string, args ...string) {
		tb.Helper()
		tpm.Run(tb, dir, program, args...)
		// No resource manager: transient objects stay loaded until flushed.
		tpm.Run(tb, dir, "tpm2_flushcontext", "-t")
	}
	read := func(tb testing.TB, name string) []byte {
		tb.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}

	run(t, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
	for _, ak := range []struct{ name, alg, scheme string }{
		{"rsassa", "rsa", "rsassa"},
		{"rsapss", "rsa", "rsapss"},
		{"ecdsa", "ecc", "ecdsa"},
		{"rsassa2", "rsa", "rsassa"},
		{"ecdsa2", "ecc", "ecdsa"},
	} {
		run(t, "tpm2_createak", "-C", "ek.ctx", "-c", ak.name+".ctx", "-G", ak.alg, "-g", "sha256", "-s", ak.scheme, "-u", ak.name+".pub")
	}

	// PCR 15 holds an agent-like measurement; the rest stay at zero.
	d256 := sha256.Sum256([]byte("agent"))
	d1 := sha1.Sum([]byte("agent"))
	run(t, "tpm2_pcrextend", fmt.Sprintf("15:sha1=%x,sha256=%x", d1, d256))
	pcr15 := sha256.Sum256(append(make([]byte, 32), d256[:]...))

	nonce := attest.BindNonce([]byte("controller nonce"), verifierTLSKey("node tls key"))
	type files struct{ msg, sig, pcrs []byte }
	// schemes are the tpm2_quote --scheme of each AK; it defaults to
	// rsassa for RSA keys.
	schemes := map[string]string{"rsassa": "rsassa", "rsapss": "rsapss", "ecdsa": "ecdsa"}
	quote := func(tb testing.TB, name, ak, list, format string, nonce []byte) files {
		tb.Helper()
		run(tb, "tpm2_quote", "-c", ak+".ctx", "-l", list, "-q", hex.EncodeToString(nonce), "-g", "sha256", "--scheme", schemes[ak],
			"-m", name+".msg", "-s", name+".sig", "-o", name+".pcrs", "-F", format)
		return files{read(tb, name+".msg"), read(tb, name+".sig"), read(tb, name+".pcrs")}
	}

	cases := []struct {
		name, ak, list, format string
		want                   []int // sha256 PCRs returned
	}{
		{"RSASSA, serialized", "rsassa", "sha256:0,1,2,15,16", "serialized", []int{0, 1, 2, 15, 16}},
		{"RSAPSS, serialized", "rsapss", "sha256:0,15", "serialized", []int{0, 15}},
		{"ECDSA, serialized", "ecdsa", "sha256:0,1,2,3,4,5,6,7,15", "serialized", []int{0, 1, 2, 3, 4, 5, 6, 7, 15}},
		{"RSASSA, values", "rsassa", "sha256:0,1,2,15", "values", []int{0, 1, 2, 15}},
		{"two banks, more than 8 PCRs, serialized", "rsassa", "sha1:15+sha256:0,1,2,3,4,5,6,7,8,9,15", "serialized", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15}},
		{"two banks, values", "ecdsa", "sha1:0,15+sha256:7,15", "values", []int{7, 15}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := quote(t, fmt.Sprintf("q%d", i), tc.ak, tc.list, tc.format, nonce)
			akPub := read(t, tc.ak+".pub")

			got, err := attest.VerifyTPM2ToolsQuote(akPub, f.msg, f.sig, f.pcrs, nonce)
			if err != nil {
				t.Fatalf("VerifyTPM2ToolsQuote: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Errorf("got PCRs %v, want %v", got, tc.want)
			}
			for _, i := range tc.want {
				want := make([]byte, 32)
				if i == 15 {
					want = pcr15[:]
				}
				if !bytes.Equal(got[i], want) {
					t.Errorf("PCR %d = %x, want %x", i, got[i], want)
				}
			}

			// The same quote, altered one way at a time.
			flipped := func(b []byte, at int) []byte {
				b = bytes.Clone(b)
				b[at] ^= 1
				return b
			}
			at15 := bytes.Index(f.pcrs, pcr15[:])
			if at15 < 0 {
				t.Fatalf("PCR 15's value not found in the PCR file")
			}
			// Another AK of the same kind, so only the key differs.
			otherAK := map[string]string{"rsassa": "rsassa2", "rsapss": "rsassa", "ecdsa": "ecdsa2"}[tc.ak]
			bad := []struct {
				name               string
				ak, msg, sig, pcrs []byte
				nonce              []byte
				wantErr            *attest.VerifyError
			}{
				{"flipped PCR byte", akPub, f.msg, f.sig, flipped(f.pcrs, at15+31), nonce, attest.ErrPCRValues},
				{"stale nonce", akPub, f.msg, f.sig, f.pcrs, attest.BindNonce([]byte("next nonce"), verifierTLSKey("node tls key")), attest.ErrNonce},
				{"flipped message byte", akPub, flipped(f.msg, len(f.msg)-1), f.sig, f.pcrs, nonce, attest.ErrSignature},
				{"flipped signature byte", akPub, f.msg, flipped(f.sig, len(f.sig)-1), f.pcrs, nonce, attest.ErrSignature},
				{"another AK", read(t, otherAK+".pub"), f.msg, f.sig, f.pcrs, nonce, attest.ErrSignature},
				{"truncated PCR file", akPub, f.msg, f.sig, f.pcrs[:len(f.pcrs)-1], nonce, attest.ErrPCRFile},
				{"EK instead of AK", read(t, "ek.pub"), f.msg, f.sig, f.pcrs, nonce, attest.ErrAKParameters},
			}
			for _, b := range bad {
				_, err := attest.VerifyTPM2ToolsQuote(b.ak, b.msg, b.sig, b.pcrs, b.nonce)
				t.Run(b.name, func(t *testing.T) { verifierWantErr(t, err, b.wantErr, "") })
			}
		})
	}

	t.Run("PCR file of another quote", func(t *testing.T) {
		a := quote(t, "qa", "rsassa", "sha256:0,15", "serialized", nonce)
		b := quote(t, "qb", "rsassa", "sha256:0,16", "serialized", nonce)
		_, err := attest.VerifyTPM2ToolsQuote(read(t, "rsassa.pub"), a.msg, a.sig, b.pcrs, nonce)
		verifierWantErr(t, err, attest.ErrPCRValues, "")
	})
	t.Run("no sha256 bank", func(t *testing.T) {
		a := quote(t, "qsha1", "rsassa", "sha1:0,15", "serialized", nonce)
		_, err := attest.VerifyTPM2ToolsQuote(read(t, "rsassa.pub"), a.msg, a.sig, a.pcrs, nonce)
		verifierWantErr(t, err, attest.ErrBankMissing, "")
	})
}
