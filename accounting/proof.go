package accounting

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Anchor says where an epoch's root was published; filled by the anchoring
// side, not checked here.
type Anchor struct {
	ChainID     uint64 `json:"chain_id,omitempty"`
	Contract    string `json:"contract,omitempty"`
	TxHash      string `json:"tx_hash,omitempty"`
	BlockNumber uint64 `json:"block_number,omitempty"`
}

// Proof is everything needed to check one record against an anchored root.
type Proof struct {
	Record     UsageRecord `json:"record"`
	RecordHash [32]byte    `json:"record_hash"`
	Epoch      uint64      `json:"epoch"`
	LeafIndex  uint64      `json:"leaf_index"`
	TreeSize   uint64      `json:"tree_size"`
	Path       [][32]byte  `json:"audit_path"`
	Root       [32]byte    `json:"root"`
	Anchor     Anchor      `json:"anchor"`
}

type proofJSON struct {
	*proofAlias
	RecordHash hexHash   `json:"record_hash"`
	Path       []hexHash `json:"audit_path"`
	Root       hexHash   `json:"root"`
}

type proofAlias Proof

// MarshalJSON writes hashes as "0x" hex.
func (p Proof) MarshalJSON() ([]byte, error) {
	return json.Marshal(proofJSON{(*proofAlias)(&p), p.RecordHash, toHex(p.Path), p.Root})
}

// UnmarshalJSON reads hashes from hex.
func (p *Proof) UnmarshalJSON(b []byte) error {
	v := proofJSON{proofAlias: new(proofAlias)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Proof(*v.proofAlias)
	p.RecordHash, p.Path, p.Root = v.RecordHash, fromHex(v.Path), v.Root
	return nil
}

// ErrRecordHash reports a record whose fields no longer hash to the proof's
// record hash.
var ErrRecordHash = errors.New("record fields do not match the record hash")

// VerifyProof checks p against what was anchored for its epoch: the
// epoch commitment the chain holds (see Epoch.Commitment), which pins the
// epoch's number, first seq and size as well, or a bare Merkle root. The
// record hash is recomputed from the fields, then the audit path is
// followed to the proof's root.
func VerifyProof(p Proof, anchoredRoot [32]byte) error {
	if err := p.Record.encodable(); err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	h := p.Record.Hash()
	if h != p.RecordHash {
		return fmt.Errorf("proof for seq %d (job %d): %w (%s, proof says %s)", p.Record.Seq, p.Record.JobID, ErrRecordHash, HashHex(h), HashHex(p.RecordHash))
	}
	if !p.anchorMatches(anchoredRoot) {
		return fmt.Errorf("proof for seq %d: root %s (commitment %s) is not the anchored root %s", p.Record.Seq, HashHex(p.Root), HashHex(p.Commitment()), HashHex(anchoredRoot))
	}
	if err := VerifyInclusion(h, p.LeafIndex, p.TreeSize, p.Path, p.Root); err != nil {
		return fmt.Errorf("proof for seq %d in epoch %d: %w", p.Record.Seq, p.Epoch, err)
	}
	return nil
}
