package attesttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/internal/testenv"
)

// Swtpm is a swtpm process manufactured the way a TPM vendor would: an RSA
// EK persisted at 0x81010001 with its certificate in NV 0x01c00002, signed
// by a local CA that plays the TPM manufacturer.
type Swtpm struct {
	// Spec opens the TPM with attest.Open: "swtpm:127.0.0.1:PORT", or
	// "unix:PATH" with SwtpmConfig.Unix.
	Spec string
	// CtrlAddr is swtpm's control channel (TCP).
	CtrlAddr string
	// StateDir holds the TPM's persistent state.
	StateDir string
	// CACertPEM is the manufacturer's root CA, the one a verifier trusts.
	CACertPEM []byte
	// IntermediatePEM is the local CA that signed the EK certificate; a
	// verifier gets it as an intermediate.
	IntermediatePEM []byte

	dir  string
	unix bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// SwtpmConfig tunes StartSwtpmWith. The zero value is StartSwtpm's.
type SwtpmConfig struct {
	// CADir is the local CA's directory. Nodes given the same CADir share a
	// manufacturer; empty means dir/ca.
	CADir string
	// PCRBanks are the banks to allocate, default "sha1,sha256".
	PCRBanks string
	// Unix serves commands on a unix socket (raw, "unix:" spec) instead
	// of TCP.
	Unix bool
}

// agentSwtpmTools are the programs the helper runs.
var agentSwtpmTools = []string{"swtpm", "swtpm_setup", "swtpm_localca"}

// RequireSwtpm ends the test unless swtpm is installed: a skip on a
// developer's machine, a failure in CI.
func RequireSwtpm(t testing.TB) {
	t.Helper()
	testenv.RequireTools(t, agentSwtpmTools...)
}

// StartSwtpm manufactures a TPM in dir (its own local CA in dir/ca) and
// runs swtpm on free loopback ports until the test ends.
func StartSwtpm(t testing.TB, dir string) *Swtpm {
	t.Helper()
	return StartSwtpmWith(t, dir, SwtpmConfig{})
}

// StartSwtpmWith is StartSwtpm with a config. Every call manufactures a
// new TPM (new EK): run it once per simulated node, since copying a state
// directory clones the EK.
func StartSwtpmWith(t testing.TB, dir string, cfg SwtpmConfig) *Swtpm {
	t.Helper()
	RequireSwtpm(t)
	if cfg.CADir == "" {
		cfg.CADir = filepath.Join(dir, "ca")
	}
	if cfg.PCRBanks == "" {
		cfg.PCRBanks = "sha1,sha256"
	}
	s := &Swtpm{dir: dir, unix: cfg.Unix, StateDir: filepath.Join(dir, "state")}
	if err := s.manufacture(cfg); err != nil {
		t.Fatalf("attesttest: %v", err)
	}
	var err error
	if s.CACertPEM, err = os.ReadFile(filepath.Join(cfg.CADir, "swtpm-localca-rootca-cert.pem")); err != nil {
		t.Fatalf("attesttest: local CA: %v", err)
	}
	if s.IntermediatePEM, err = os.ReadFile(filepath.Join(cfg.CADir, "issuercert.pem")); err != nil {
		t.Fatalf("attesttest: local CA: %v", err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("attesttest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// manufacture runs swtpm_setup with config files of its own, so nothing in
// /etc, $HOME or /var/lib/swtpm-localca is read or written.
func (s *Swtpm) manufacture(cfg SwtpmConfig) error {
	tmp := filepath.Join(s.dir, "tmp")
	for _, d := range []string{s.StateDir, cfg.CADir, tmp, filepath.Join(s.dir, "xdg")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		"swtpm-localca.conf":    fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", cfg.CADir),
		"swtpm-localca.options": "--platform-manufacturer Stockade\n--platform-version 2.1\n--platform-model swtpm\n",
		"swtpm_setup.conf": fmt.Sprintf("create_certs_tool = %s\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\nactive_pcr_banks = %s\n",
			agentLookPath("swtpm_localca"), filepath.Join(s.dir, "swtpm-localca.conf"), filepath.Join(s.dir, "swtpm-localca.options"), cfg.PCRBanks),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swtpm_setup", "--tpm2",
		"--tpmstate", s.StateDir,
		"--config", filepath.Join(s.dir, "swtpm_setup.conf"),
		"--create-ek-cert", "--create-platform-cert",
		"--pcr-banks", cfg.PCRBanks,
		"--overwrite",
		"--logfile", filepath.Join(s.dir, "swtpm_setup.log"))
	cmd.Env = s.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "swtpm_setup.log"))
		return fmt.Errorf("swtpm_setup: %v: %s%s", err, out, log)
	}
	return nil
}

func (s *Swtpm) env() []string {
	return append(os.Environ(),
		"TMPDIR="+filepath.Join(s.dir, "tmp"),
		"XDG_CONFIG_HOME="+filepath.Join(s.dir, "xdg"))
}

func agentLookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// start runs swtpm on the state. The control channel gets an already
// listening socket (no port race); the server port is picked free and
// retried if another process takes it first.
func (s *Swtpm) start() error {
	var lastErr error
	for range 5 {
		if lastErr = s.startOnce(); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

func (s *Swtpm) startOnce() error {
	ctrl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctrlFile, err := ctrl.(*net.TCPListener).File()
	ctrl.Close() // the file keeps the socket
	if err != nil {
		return err
	}
	defer ctrlFile.Close()

	var server, spec string
	if s.unix {
		path := filepath.Join(s.dir, "swtpm.sock")
		os.Remove(path)
		server, spec = "type=unixio,path="+path, "unix:"+path
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr := l.Addr().String()
		l.Close()
		server = fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", l.Addr().(*net.TCPAddr).Port)
		spec = "swtpm:" + addr
	}
	logPath := filepath.Join(s.dir, "swtpm.log")
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.StateDir,
		"--server", server,
		"--ctrl", "type=tcp,fd=3",
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+logPath)
	cmd.ExtraFiles = []*os.File{ctrlFile}
	cmd.Env = s.env()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()

	ctrlAddr := ctrl.Addr().String()
	if err := agentSwtpmReady(ctrlAddr, done); err != nil {
		cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("swtpm did not come up: %v: %s%s", err, stderr.Bytes(), log)
	}
	s.mu.Lock()
	s.cmd, s.done, s.Spec, s.CtrlAddr = cmd, done, spec, ctrlAddr
	s.mu.Unlock()
	return nil
}

// swtpm control channel commands (swtpm's ioctl numbering), big-endian.
const (
	agentCmdGetCapability = 1
	agentCmdInit          = 2
)

// agentSwtpmReady waits until the control channel answers
// CMD_GET_CAPABILITY, which swtpm does once its main loop runs.
func agentSwtpmReady(ctrlAddr string, done <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := agentSwtpmCtrl(ctrlAddr, agentCmdGetCapability, nil, 8)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("swtpm exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agentSwtpmCtrl sends one control command and reads respLen bytes, the
// first four of which are the result code.
func agentSwtpmCtrl(addr string, cmd uint32, payload []byte, respLen int) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(append(binary.BigEndian.AppendUint32(nil, cmd), payload...)); err != nil {
		return nil, err
	}
	resp := make([]byte, respLen)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return nil, err
	}
	if rc := binary.BigEndian.Uint32(resp); rc != 0 {
		return nil, fmt.Errorf("swtpm control command %d: result 0x%x", cmd, rc)
	}
	return resp, nil
}

// Reboot resets the TPM like a host reboot: CMD_INIT on the control
// channel, then TPM2_Startup(CLEAR) as firmware would. PCRs go back to
// zero; keys, NV and persistent handles stay. swtpm serves one connection
// at a time, so close the attest.TPM first (a reboot ends the agent too).
func (s *Swtpm) Reboot() error {
	s.mu.Lock()
	spec, ctrl := s.Spec, s.CtrlAddr
	s.mu.Unlock()
	if _, err := agentSwtpmCtrl(ctrl, agentCmdInit, make([]byte, 4), 4); err != nil {
		return fmt.Errorf("attesttest: CMD_INIT: %w", err)
	}
	// TPM2_Startup(TPM_SU_CLEAR).
	startup := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0}
	var conn net.Conn
	var err error
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		conn, err = net.DialTimeout("unix", path, time.Second)
	} else {
		conn, err = net.DialTimeout("tcp", strings.TrimPrefix(spec, "swtpm:"), time.Second)
		startup = append(binary.BigEndian.AppendUint32(nil, 8), append([]byte{0},
			append(binary.BigEndian.AppendUint32(nil, uint32(len(startup))), startup...)...)...)
	}
	if err != nil {
		return fmt.Errorf("attesttest: Startup: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(startup); err != nil {
		return fmt.Errorf("attesttest: Startup: %w", err)
	}
	resp := make([]byte, 10)
	if !s.unix {
		resp = make([]byte, 4+10+4) // length, response, acknowledgement
	}
	if _, err := io.ReadFull(conn, resp); err != nil {
		return fmt.Errorf("attesttest: Startup (is an attest.TPM still open?): %w", err)
	}
	if !s.unix {
		resp = resp[4:14]
	}
	if rc := binary.BigEndian.Uint32(resp[6:]); rc != 0 {
		return fmt.Errorf("attesttest: Startup: TPM_RC 0x%x", rc)
	}
	return nil
}

// Restart stops swtpm and starts it again on the same state, like a power
// cycle: PCRs reset. Spec changes (new port); reopen with the new one.
func (s *Swtpm) Restart() error {
	s.Stop()
	return s.start()
}

// Stop terminates swtpm (SIGTERM, which saves its state, then SIGKILL after
// five seconds). It is safe to call more than once.
func (s *Swtpm) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}
