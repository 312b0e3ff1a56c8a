package accounting

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strings"
)

// PriceTable is what the operator charges, in micro-units of Currency per
// unit-hour; memory is per GiB-hour of peak memory.
type PriceTable struct {
	Version   uint64 `json:"version"`
	Currency  string `json:"currency"`
	CPUHour   int64  `json:"cpu_hour"`
	MemGBHour int64  `json:"mem_gb_hour"`
	GPUHour   int64  `json:"gpu_hour"`
	Split     Split  `json:"split"`
}

// Split divides a charge among roles, in basis points summing to 10000.
type Split struct {
	NodeOperator    uint32 `json:"node_operator"`
	ClusterOperator uint32 `json:"cluster_operator"`
	ImagePublisher  uint32 `json:"image_publisher"`
	Charity         uint32 `json:"charity"`
}

// Validate checks the table; errors name the field.
func (p PriceTable) Validate() error {
	switch {
	case p.Version == 0:
		return errors.New("version: must be at least 1")
	case p.Currency == "":
		return errors.New("currency: empty")
	case p.CPUHour < 0:
		return errors.New("cpu_hour: negative")
	case p.MemGBHour < 0:
		return errors.New("mem_gb_hour: negative")
	case p.GPUHour < 0:
		return errors.New("gpu_hour: negative")
	}
	return p.Split.Validate()
}

// Validate checks that the shares add up to the whole charge.
func (s Split) Validate() error {
	for _, f := range []struct {
		name string
		v    uint32
	}{{"node_operator", s.NodeOperator}, {"cluster_operator", s.ClusterOperator}, {"image_publisher", s.ImagePublisher}, {"charity", s.Charity}} {
		if f.v > 10000 {
			return fmt.Errorf("split.%s: %d basis points is more than 10000", f.name, f.v)
		}
	}
	if sum := uint64(s.NodeOperator) + uint64(s.ClusterOperator) + uint64(s.ImagePublisher) + uint64(s.Charity); sum != 10000 {
		return fmt.Errorf("split: basis points sum to %d, want 10000", sum)
	}
	return nil
}

// Beneficiaries says who is paid for each role.
type Beneficiaries struct {
	// ClusterOperator also receives every share whose beneficiary is empty
	// and the rounding remainder.
	ClusterOperator string `json:"cluster_operator"`
	Charity         string `json:"charity"`
	// NodeOperators maps node name to beneficiary; a node not listed pays
	// "node:" + its name.
	NodeOperators map[string]string `json:"node_operators,omitempty"`
	// ImagePublishers maps an image reference prefix to the beneficiary;
	// the longest prefix ending at a '/', ':' or '@' boundary (or ending
	// in '/') wins. An image not matched pays its registry/owner.
	ImagePublishers map[string]string `json:"image_publishers,omitempty"`
}

// Validate checks that someone receives the cluster operator's share.
func (b Beneficiaries) Validate() error {
	if b.ClusterOperator == "" {
		return errors.New("cluster_operator: empty")
	}
	return nil
}

// NodeOperator is the beneficiary of a node's share.
func (b Beneficiaries) NodeOperator(node string) string {
	if op, ok := b.NodeOperators[node]; ok {
		return op
	}
	return "node:" + node
}

// ImagePublisher is the beneficiary of an image's share ("" for no image:
// the share goes to the cluster operator).
func (b Beneficiaries) ImagePublisher(image string) string {
	if image == "" {
		return ""
	}
	// Two matching prefixes of one length are equal, so longest is unique.
	best, found := "", false
	for prefix := range b.ImagePublishers {
		if prefixMatch(image, prefix) && (!found || len(prefix) > len(best)) {
			best, found = prefix, true
		}
	}
	if found {
		return b.ImagePublishers[best]
	}
	return ImageOwner(image)
}

func prefixMatch(image, prefix string) bool {
	if prefix == "" || !strings.HasPrefix(image, prefix) {
		return false
	}
	if len(image) == len(prefix) || strings.HasSuffix(prefix, "/") {
		return true
	}
	switch image[len(prefix)] {
	case '/', ':', '@':
		return true
	}
	return false
}

// ImageOwner is the registry and first path component of an image
// reference, with Docker's defaults: "ubuntu" is "docker.io/library",
// "ghcr.io/acme/tool:1" is "ghcr.io/acme", "reg.local/tool" is "reg.local".
func ImageOwner(ref string) string {
	if ref == "" {
		return ""
	}
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i] // a tag, not a registry port
	}
	parts := strings.Split(ref, "/")
	registry := "docker.io"
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		registry, parts = parts[0], parts[1:]
	} else if len(parts) == 1 {
		parts = []string{"library", parts[0]}
	}
	if len(parts) < 2 || parts[0] == "" {
		return registry
	}
	return registry + "/" + parts[0]
}

// chargeDen is the common denominator of the three resources: ms per hour
// (3.6e6), MiB-seconds per GiB-hour (1024×3600) and seconds per hour.
const chargeDen = 460_800_000

// Charge prices rec's metered quantities: CPU-ms × CPUHour/3.6e6 +
// MiB-s × MemGBHour/(1024×3600) + GPU-s × GPUHour/3600, summed exactly and
// rounded once, half up, to a micro-unit. Negative prices count as zero; a
// charge beyond int64 saturates.
func Charge(rec UsageRecord, prices PriceTable) int64 {
	term := func(q uint64, price int64, k int64) *big.Int {
		t := new(big.Int).SetUint64(q)
		t.Mul(t, big.NewInt(max(price, 0)))
		return t.Mul(t, big.NewInt(k))
	}
	n := term(rec.CPUMillis, prices.CPUHour, chargeDen/3_600_000)
	n.Add(n, term(rec.MemoryMBSeconds, prices.MemGBHour, chargeDen/(1024*3600)))
	n.Add(n, term(rec.GPUSeconds, prices.GPUHour, chargeDen/3600))
	n.Add(n, big.NewInt(chargeDen/2))
	n.Quo(n, big.NewInt(chargeDen))
	if !n.IsInt64() {
		return math.MaxInt64
	}
	return n.Int64()
}

// Price sets rec's price version, currency, charge and payouts. Each role
// gets floor(charge × basis points / 10000); the rounding remainder, and
// the share of a role nobody fills (no nodes, no image publisher, no
// charity), go to the cluster operator. The node share is split evenly
// across rec.Nodes, the remainder to the first node's operator.
func Price(rec UsageRecord, prices PriceTable, b Beneficiaries) UsageRecord {
	rec.PriceVersion = prices.Version
	rec.Currency = prices.Currency
	rec.Charge = Charge(rec, prices)
	rec.ClusterOperator = b.ClusterOperator
	rec.ImagePublisher = b.ImagePublisher(rec.Image)
	rec.Charity = b.Charity
	rec.NodeOperatorPay = nil

	split := prices.Split
	if split.Validate() != nil {
		split = Split{ClusterOperator: 10000}
	}
	share := func(bp uint32) int64 {
		hi, lo := bits.Mul64(uint64(rec.Charge), uint64(bp))
		q, _ := bits.Div64(hi, lo, 10000)
		return int64(q)
	}
	var node, pub, charity int64
	if len(rec.Nodes) > 0 {
		node = share(split.NodeOperator)
	}
	if rec.ImagePublisher != "" {
		pub = share(split.ImagePublisher)
	}
	if rec.Charity != "" {
		charity = share(split.Charity)
	}
	rec.ImagePublisherPay, rec.CharityPay = pub, charity
	rec.ClusterOperatorPay = rec.Charge - node - pub - charity

	if len(rec.Nodes) > 0 {
		rec.NodeOperatorPay = make(map[string]int64, len(rec.Nodes))
		n := int64(len(rec.Nodes))
		each := node / n
		for i, name := range rec.Nodes {
			amount := each
			if i == 0 {
				amount += node - each*n
			}
			rec.NodeOperatorPay[b.NodeOperator(name)] += amount
		}
	}
	return rec
}
