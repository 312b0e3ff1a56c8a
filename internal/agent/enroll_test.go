package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/internal/pki"
)

// writeIdentity stores a certificate issued by ca for a fresh key in a
// state dir, as enroll does.
func writeIdentity(t *testing.T, ca *pki.CA, state string, issue func(*pki.CA, any) ([]byte, error)) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := issue(ca, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(state, tlsSubdir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{caFile: ca.CertPEM, keyFile: keyPEM, certFile: certPEM} {
		if err := pki.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadIdentity(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	agentCert := func(name string) func(*pki.CA, any) ([]byte, error) {
		return func(ca *pki.CA, pub any) ([]byte, error) { return ca.IssueAgent(name, pub) }
	}
	controllerCert := func(ca *pki.CA, pub any) ([]byte, error) { return ca.IssueController("c1", nil, pub) }
	tests := []struct {
		name    string
		issue   func(*pki.CA, any) ([]byte, error)
		node    string
		now     time.Time
		wantErr string
	}{
		{"agent certificate", agentCert("node1"), "node1", time.Now(), ""},
		{"another node's certificate", agentCert("node2"), "node1", time.Now(), `for "node2"`},
		{"controller certificate", func(ca *pki.CA, pub any) ([]byte, error) {
			return ca.IssueController("node1", nil, pub)
		}, "node1", time.Now(), "role"},
		{"wrong name and role", controllerCert, "node1", time.Now(), "not"},
		{"expired", agentCert("node1"), "node1", time.Now().Add(20 * 365 * 24 * time.Hour), "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			if ok, err := enrolled(state); ok || err != nil {
				t.Fatalf("empty state dir enrolled: %v %v", ok, err)
			}
			writeIdentity(t, ca, state, tc.issue)
			if ok, err := enrolled(state); !ok || err != nil {
				t.Fatalf("enrolled: %v %v", ok, err)
			}
			id, err := loadIdentity(state, tc.node, tc.now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Name() != tc.node || clusterNameFromCA(id.CA.Subject.CommonName) != "test" {
				t.Errorf("identity %v, CA %v", id.Leaf.Subject, id.CA.Subject)
			}
		})
	}
}

func TestClusterNameFromCA(t *testing.T) {
	tests := []struct{ cn, want string }{
		{"Stockade CA test", "test"},
		{"Stockade CA  prod-1 ", "prod-1"},
		{"Some Other CA", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := clusterNameFromCA(tc.cn); got != tc.want {
			t.Errorf("clusterNameFromCA(%q) = %q, want %q", tc.cn, got, tc.want)
		}
	}
}

func TestEnrollNeedsToken(t *testing.T) {
	opts := Options{Name: "node1", Servers: []string{"127.0.0.1:1"}, StateDir: t.TempDir()}
	err := enroll(t.Context(), testLogger(t), opts)
	if err == nil || !strings.Contains(err.Error(), "join-token") {
		t.Errorf("enroll without a token: %v", err)
	}
	opts.JoinToken = "stkjoin.nothex.secret"
	if err := enroll(t.Context(), testLogger(t), opts); err == nil {
		t.Errorf("enroll with a malformed token succeeded")
	}
}
