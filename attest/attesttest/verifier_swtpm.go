package attesttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/internal/testenv"
)

// VerifierRequireTools ends the test unless the programs are installed:
// a skip on a developer's machine, a failure in CI.
func VerifierRequireTools(tb testing.TB, programs ...string) {
	tb.Helper()
	testenv.RequireTools(tb, programs...)
}

// VerifierSwtpm is a swtpm process serving a fresh TPM 2.0 over TCP on
// 127.0.0.1, for tpm2-tools.
type VerifierSwtpm struct {
	// TCTI is the value for TPM2TOOLS_TCTI. The swtpm TCTI takes the
	// control port to be the server port plus one.
	TCTI string
}

// StartVerifierSwtpm starts swtpm and stops it when the test ends.
func StartVerifierSwtpm(tb testing.TB) *VerifierSwtpm {
	tb.Helper()
	VerifierRequireTools(tb, "swtpm")
	var lastErr error
	// The ports are free when picked but may be taken before swtpm binds
	// them; try again then.
	for range 5 {
		port, err := verifierPortPair()
		if err != nil {
			lastErr = err
			continue
		}
		s, err := verifierStartSwtpm(tb, port)
		if err == nil {
			return s
		}
		lastErr = err
	}
	tb.Fatalf("start swtpm: %v", lastErr)
	return nil
}

func verifierStartSwtpm(tb testing.TB, port int) (*VerifierSwtpm, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+tb.TempDir())
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("swtpm exited: %v: %s", err, stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("swtpm did not listen on %s: %s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Cleanup(stop)
	return &VerifierSwtpm{TCTI: fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", port)}, nil
}

// verifierPortPair finds a free TCP port whose successor is free too.
func verifierPortPair() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free pair of TCP ports")
}

// Run runs a tpm2-tools program against the swtpm in dir and returns its
// stdout; the test fails if it fails.
func (s *VerifierSwtpm) Run(tb testing.TB, dir, program string, args ...string) []byte {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(program, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %v: %v\n%s", program, args, err, stderr.String())
	}
	return stdout.Bytes()
}
