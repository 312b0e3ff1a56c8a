package testcluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
)

// TPM is a node's software TPM: a swtpm manufactured with an EK
// certificate from the cluster's local CA (the TPM "manufacturer" the
// controllers trust), which the node's agent reaches through a tap in the
// test process.
//
// swtpm serves one connection at a time and an agent keeps its connection
// open as long as it runs, so nothing else could talk to the TPM of a
// running node. The tap forwards the agent's commands unchanged and can
// slip the test's own between two of them: ExtendUnlogged changes a PCR of
// the running node's TPM the way software on a compromised node would.
type TPM struct {
	// Swtpm is the emulator (its state, control channel and CA).
	Swtpm *attesttest.Swtpm
	// Spec is the agent's --tpm: the tap, "swtpm:127.0.0.1:PORT".
	Spec string
	tap  *tpmTap
}

// tpmCADir is the manufacturer CA shared by a cluster's TPMs.
const tpmCADir = "tpm-ca"

// TPMCADir is the directory of the manufacturer CA the cluster's TPMs share
// (and its controllers trust): attesttest.SwtpmConfig{CADir: c.TPMCADir()}
// manufactures another TPM of that vendor. Manufacture one at a time, as
// the CA's serial number file is shared.
func (c *Cluster) TPMCADir() string { return filepath.Join(c.Dir, tpmCADir) }

// startTPMs manufactures a TPM per node (one after another: they share
// the CA's serial number file) and writes the CA bundle controllers get.
func (c *Cluster) startTPMs(nodes []string) {
	t := c.t
	t.Helper()
	caDir := filepath.Join(c.Dir, tpmCADir)
	for _, name := range nodes {
		sw := attesttest.StartSwtpmWith(t, filepath.Join(c.Dir, "tpm-"+name), attesttest.SwtpmConfig{CADir: caDir})
		tap, err := startTPMTap(strings.TrimPrefix(sw.Spec, "swtpm:"))
		if err != nil {
			t.Fatalf("TPM tap for %s: %v", name, err)
		}
		t.Cleanup(tap.close)
		c.TPMs[name] = &TPM{Swtpm: sw, Spec: "swtpm:" + tap.addr(), tap: tap}
		if c.TPMCABundle == "" {
			// The EK certificates chain to the root through the local CA's
			// intermediate, which they do not carry: the bundle holds both.
			bundle := append(append([]byte(nil), sw.CACertPEM...), sw.IntermediatePEM...)
			c.TPMCABundle = filepath.Join(c.Dir, "tpm-ca-bundle.pem")
			if err := os.WriteFile(c.TPMCABundle, bundle, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// ExtendUnlogged extends pcr of the TPM with the hashes of data without
// logging it (attest.ExtendUnlogged), through the tap: between two of the
// agent's commands if an agent is connected. The TPM's event log, kept by
// the agent, then no longer explains the PCR.
func (tp *TPM) ExtendUnlogged(pcr int, data []byte) error {
	t, err := attest.OpenTransport(&tapChannel{tap: tp.tap}, nil)
	if err != nil {
		return err
	}
	defer t.Close()
	return attest.ExtendUnlogged(t, pcr, data)
}

// PCR reads a PCR through the tap.
func (tp *TPM) PCR(bank string, pcr int) ([]byte, error) {
	t, err := attest.OpenTransport(&tapChannel{tap: tp.tap}, nil)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	return t.PCR(bank, pcr)
}

// MS simulator TCP protocol, which swtpm speaks on its server port and the
// agent uses ("swtpm:" specs): u32 TPM_SEND_COMMAND, u8 locality, u32
// length, command; the answer is u32 length, response, u32
// acknowledgement. Big-endian.
const (
	tapSendCommand = 8
	tapSessionEnd  = 20
	tapMaxMessage  = 1 << 16
	tapTimeout     = 30 * time.Second
)

// tpmTap listens for one client at a time, as swtpm does, and forwards
// its commands to swtpm over a connection of its own; inject sends a
// command of the test's on the same connection.
type tpmTap struct {
	l        net.Listener
	upstream string

	mu     sync.Mutex // held for one command and its answer
	up     net.Conn   // the connected client's swtpm connection, or nil
	client net.Conn   // the connected client, or nil

	wg sync.WaitGroup
}

func startTPMTap(upstream string) (*tpmTap, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tp := &tpmTap{l: l, upstream: upstream}
	tp.wg.Add(1)
	go tp.serve()
	return tp, nil
}

func (tp *tpmTap) addr() string { return tp.l.Addr().String() }

func (tp *tpmTap) close() {
	tp.l.Close()
	tp.mu.Lock()
	if tp.client != nil {
		tp.client.Close()
	}
	tp.mu.Unlock()
	tp.wg.Wait()
}

// serve handles clients one after another: swtpm would not serve a second
// client before the first hangs up either.
func (tp *tpmTap) serve() {
	defer tp.wg.Done()
	for {
		conn, err := tp.l.Accept()
		if err != nil {
			return
		}
		tp.handle(conn)
	}
}

func (tp *tpmTap) handle(conn net.Conn) {
	defer conn.Close()
	up, err := net.DialTimeout("tcp", tp.upstream, 10*time.Second)
	if err != nil {
		return
	}
	tp.mu.Lock()
	tp.up, tp.client = up, conn
	tp.mu.Unlock()
	defer func() {
		tp.mu.Lock()
		up.Close()
		tp.up, tp.client = nil, nil
		tp.mu.Unlock()
	}()
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(conn, hdr[:4]); err != nil {
			return
		}
		if cmd := binary.BigEndian.Uint32(hdr[:]); cmd != tapSendCommand {
			return // TPM_SESSION_END, or a command the agent never sends
		}
		if _, err := io.ReadFull(conn, hdr[4:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[5:])
		if n > tapMaxMessage {
			return
		}
		msg := make([]byte, 9+n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(conn, msg[9:]); err != nil {
			return
		}
		tp.mu.Lock()
		answer, err := tapRoundTrip(up, msg)
		tp.mu.Unlock()
		if err != nil {
			return
		}
		if _, err := conn.Write(answer); err != nil {
			return
		}
	}
}

// inject sends one TPM command on the connected client's swtpm connection
// (or a new one) and returns the TPM's response.
func (tp *tpmTap) inject(cmd []byte) ([]byte, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	up := tp.up
	if up == nil {
		c, err := net.DialTimeout("tcp", tp.upstream, 10*time.Second)
		if err != nil {
			return nil, err
		}
		defer func() {
			// Say goodbye, so that swtpm serves the next client at once.
			c.Write(binary.BigEndian.AppendUint32(nil, tapSessionEnd))
			c.Close()
		}()
		up = c
	}
	msg := binary.BigEndian.AppendUint32(nil, tapSendCommand)
	msg = append(msg, 0) // locality
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(cmd)))
	msg = append(msg, cmd...)
	answer, err := tapRoundTrip(up, msg)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(answer)
	if ack := binary.BigEndian.Uint32(answer[4+n:]); ack != 0 {
		return nil, fmt.Errorf("swtpm acknowledged with %d", ack)
	}
	return answer[4 : 4+n], nil
}

// tapRoundTrip sends a framed command to swtpm and returns its framed
// answer (length, response, acknowledgement).
func tapRoundTrip(up net.Conn, msg []byte) ([]byte, error) {
	up.SetDeadline(time.Now().Add(tapTimeout))
	defer up.SetDeadline(time.Time{})
	if _, err := up.Write(msg); err != nil {
		return nil, err
	}
	var lb [4]byte
	if _, err := io.ReadFull(up, lb[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > tapMaxMessage {
		return nil, fmt.Errorf("swtpm answer of %d bytes", n)
	}
	answer := make([]byte, 4+n+4)
	copy(answer, lb[:])
	if _, err := io.ReadFull(up, answer[4:]); err != nil {
		return nil, err
	}
	return answer, nil
}

// tapChannel is a TPM character device (attest.OpenTransport) whose
// commands go through the tap.
type tapChannel struct {
	tap  *tpmTap
	resp []byte
}

func (ch *tapChannel) Write(cmd []byte) (int, error) {
	resp, err := ch.tap.inject(cmd)
	if err != nil {
		return 0, err
	}
	ch.resp = resp
	return len(cmd), nil
}

func (ch *tapChannel) Read(p []byte) (int, error) {
	if ch.resp == nil {
		return 0, errors.New("no TPM response pending")
	}
	n := copy(p, ch.resp)
	if n < len(ch.resp) {
		return n, errors.New("TPM response larger than the read buffer")
	}
	ch.resp = nil
	return n, nil
}

// Close leaves the tap's connection to the client it belongs to.
func (ch *tapChannel) Close() error { return nil }
