package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/BurntSushi/toml"
)

// manifest is a reference manifest: the golden PCR values of a platform,
// as published by its vendor or measured on a known-good machine.
//
// TOML:
//
//	bank = "sha256"   # optional; only sha256 is supported
//	[pcr]
//	0 = ["3d458cfe...", "..."]
//	7 = ["..."]
//
// JSON (detected by a leading "{"):
//
//	{"bank": "sha256", "pcr": {"0": ["3d458cfe..."], "7": ["..."]}}
//
// Values are 64 hex digits; several values for one PCR mean any of them is
// allowed (e.g. two firmware versions during a rollout).
type manifest struct {
	Bank string              `toml:"bank" json:"bank"`
	PCR  map[string][]string `toml:"pcr" json:"pcr"`
}

// ParseManifest parses a reference manifest (see the format above) into
// golden values for Policy.Golden, lowercased, sorted and deduplicated.
// Unknown keys are errors so that a misspelt key cannot silently drop a PCR.
func ParseManifest(data []byte) (map[int][]string, error) {
	var m manifest
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		if dec.More() {
			return nil, errors.New("manifest: trailing data after the JSON object")
		}
	} else {
		md, err := toml.Decode(string(data), &m)
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		if extra := md.Undecoded(); len(extra) > 0 {
			return nil, fmt.Errorf("manifest: %s: unknown key", extra[0])
		}
	}

	if m.Bank != "" && m.Bank != BankSHA256 {
		return nil, fmt.Errorf("manifest: bank: only %s is supported, not %q", BankSHA256, m.Bank)
	}
	if len(m.PCR) == 0 {
		return nil, errors.New("manifest: pcr: no PCR values")
	}
	golden := make(map[int][]string, len(m.PCR))
	// Sorted so that the error for a bad file is always the same one.
	for _, key := range slices.Sorted(maps.Keys(m.PCR)) {
		vals := m.PCR[key]
		i, err := strconv.Atoi(key)
		// Only canonical spellings, so "07" and "7" cannot both appear.
		if err != nil || strconv.Itoa(i) != key || i < 0 || i > maxPCR {
			return nil, fmt.Errorf("manifest: pcr.%s: not a PCR index 0-%d", key, maxPCR)
		}
		if len(vals) == 0 {
			return nil, fmt.Errorf("manifest: pcr.%s: empty list", key)
		}
		c, err := canonicalHexList(vals)
		if err != nil {
			return nil, fmt.Errorf("manifest: pcr.%s%s", key, err)
		}
		golden[i] = c
	}
	return golden, nil
}
