// Package policy holds the measurement policy a node must satisfy to run
// jobs — golden PCR values, the allow-list of agent binaries, the required
// PCR bank — and evaluates verified evidence against it. Policies are data
// (stored in Raft), never code, as in Keylime.
package policy

// Evidence is what a verified quote and a replayed event log say about a
// node. The attestation verifier builds it only after the quote signature,
// the nonce and the log replay have been checked.
type Evidence struct {
	// Bank is the PCR bank the values and digests below are in ("sha256").
	Bank string
	// PCRs are the quoted PCR values, by index.
	PCRs map[int][]byte
	// Measurements are the event log's events, in log order.
	Measurements []Measurement
	// Explained marks PCRs whose quoted value equals the replay of the
	// log's events for that PCR. A PCR with no events is explained only
	// when it holds its reset value (all zeros).
	Explained map[int]bool
}

// Measurement is one event of the log.
type Measurement struct {
	PCR    int
	Type   uint32 // TCG event type
	Digest []byte // in Evidence.Bank
	Data   []byte // event data, e.g. "stockade-agent-binary /usr/local/bin/stockade"
}

// Event data prefixes of the measurements the Stockade agent makes into its
// PCR (default 15) at start, before anything else it logs.
const (
	// The digest is the SHA-256 of the agent's executable file.
	EventAgentBinary = "stockade-agent-binary "
	// The digest is the SHA-256 of the agent's effective configuration
	// (canonical JSON, which follows the prefix in the event data).
	EventAgentConfig = "stockade-agent-config "
)
