package accounting

import (
	"math"
	"reflect"
	"testing"
)

func TestCharge(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cpuMs     uint64
		mbSec     uint64
		gpuSec    uint64
		cpu, mem  int64
		gpu, want int64
	}{
		{"one CPU-hour", 3_600_000, 0, 0, 1_000_000, 0, 0, 1_000_000},
		{"one GiB-hour", 0, 1024 * 3600, 0, 0, 7, 0, 7},
		{"one GPU-hour", 0, 0, 3600, 0, 0, 900_000, 900_000},
		{"half rounds up", 1, 0, 0, 1_800_000, 0, 0, 1},
		{"just below half rounds down", 1, 0, 0, 1_799_999, 0, 0, 0},
		{"GPU half rounds up", 0, 0, 1, 0, 0, 1800, 1},
		{"GPU below half", 0, 0, 1, 0, 0, 1799, 0},
		{"memory half (1 MiB-s at 1843200/GiB-h)", 0, 1, 0, 0, 1_843_200, 0, 1},
		// Two quarters: rounding once gives 1, rounding each term 0.
		{"terms summed before rounding", 1, 0, 1, 900_000, 0, 900, 1},
		{"all three", 3_600_000, 2 * 1024 * 3600, 1800, 10, 20, 30, 10 + 40 + 15},
		{"negative prices count as zero", 3_600_000, 1024 * 3600, 3600, -5, -5, -5, 0},
		{"saturates", math.MaxUint64, 0, 0, math.MaxInt64, 0, 0, math.MaxInt64},
		{"nothing used", 0, 0, 0, 1, 1, 1, 0},
	} {
		r := UsageRecord{CPUMillis: tc.cpuMs, MemoryMBSeconds: tc.mbSec, GPUSeconds: tc.gpuSec}
		p := PriceTable{CPUHour: tc.cpu, MemGBHour: tc.mem, GPUHour: tc.gpu}
		if got := Charge(r, p); got != tc.want {
			t.Errorf("%s: Charge = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPricePayouts(t *testing.T) {
	// CPUHour 3.6e6 charges one micro-unit per CPU-ms.
	perMs := func(split Split) PriceTable {
		return PriceTable{Version: 1, Currency: "EUR", CPUHour: 3_600_000, Split: split}
	}
	std := Split{NodeOperator: 7000, ClusterOperator: 2000, ImagePublisher: 500, Charity: 500}
	full := Beneficiaries{ClusterOperator: "cl", Charity: "ch"}
	img := "ghcr.io/acme/x:1"
	type pay struct {
		nodes            map[string]int64
		cluster, pub, ch int64
	}
	for _, tc := range []struct {
		name   string
		charge uint64
		nodes  []string
		image  string
		b      Beneficiaries
		split  Split
		want   pay
	}{
		{"remainders", 1001, []string{"a", "b", "c"}, img, full, std,
			// 700.7→700 split 234/233/233; 50.05→50 twice; 201 to cluster.
			pay{map[string]int64{"node:a": 234, "node:b": 233, "node:c": 233}, 201, 50, 50}},
		{"no nodes: node share to cluster", 1001, nil, img, full, std,
			pay{nil, 901, 50, 50}},
		{"no image: publisher share to cluster", 1001, []string{"a"}, "", full, std,
			pay{map[string]int64{"node:a": 700}, 251, 0, 50}},
		{"no charity: its share to cluster", 1001, []string{"a"}, img, Beneficiaries{ClusterOperator: "cl"}, std,
			pay{map[string]int64{"node:a": 700}, 251, 50, 0}},
		{"nodes of one operator add up", 1000, []string{"gpu1", "gpu3", "gpu2"}, img, testBeneficiaries, std,
			// 700/3 = 233 r 1; gpu1 (first, op:alice) gets the 1.
			pay{map[string]int64{"op:alice": 234 + 233, "op:bob": 233}, 200, 50, 50}},
		{"invalid split: all to cluster", 1001, []string{"a"}, img, full, Split{NodeOperator: 9000},
			pay{map[string]int64{"node:a": 0}, 1001, 0, 0}},
		{"zero charge", 0, []string{"a", "b"}, img, full, std,
			pay{map[string]int64{"node:a": 0, "node:b": 0}, 0, 0, 0}},
		{"one micro-unit", 1, []string{"a", "b", "c"}, img, full, std,
			pay{map[string]int64{"node:a": 0, "node:b": 0, "node:c": 0}, 1, 0, 0}},
		{"all to charity", 999, []string{"a"}, img, full, Split{Charity: 10000},
			pay{map[string]int64{"node:a": 0}, 0, 0, 999}},
		{"largest charge", math.MaxInt64, []string{"a", "b"}, img, full, std,
			pay{map[string]int64{"node:a": 3228180212899171532, "node:b": 3228180212899171532},
				1844674407370955163, 461168601842738790, 461168601842738790}},
	} {
		r := UsageRecord{CPUMillis: tc.charge, Nodes: tc.nodes, Image: tc.image}
		r = Price(r, perMs(tc.split), tc.b)
		got := pay{r.NodeOperatorPay, r.ClusterOperatorPay, r.ImagePublisherPay, r.CharityPay}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: payouts %+v, want %+v", tc.name, got, tc.want)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if r.Charge != int64(min(tc.charge, math.MaxInt64)) || r.PriceVersion != 1 || r.Currency != "EUR" {
			t.Errorf("%s: charge %d version %d currency %s", tc.name, r.Charge, r.PriceVersion, r.Currency)
		}
	}
}

func TestPriceTableValidate(t *testing.T) {
	ok := testPrices
	for _, tc := range []struct {
		name string
		edit func(p *PriceTable)
		err  string
	}{
		{"good", func(p *PriceTable) {}, ""},
		{"version", func(p *PriceTable) { p.Version = 0 }, "version: must be at least 1"},
		{"currency", func(p *PriceTable) { p.Currency = "" }, "currency: empty"},
		{"cpu", func(p *PriceTable) { p.CPUHour = -1 }, "cpu_hour: negative"},
		{"mem", func(p *PriceTable) { p.MemGBHour = -1 }, "mem_gb_hour: negative"},
		{"gpu", func(p *PriceTable) { p.GPUHour = -1 }, "gpu_hour: negative"},
		{"split sum", func(p *PriceTable) { p.Split.Charity = 400 }, "split: basis points sum to 9900, want 10000"},
		{"split field", func(p *PriceTable) { p.Split = Split{ImagePublisher: 20000} }, "split.image_publisher: 20000 basis points is more than 10000"},
		// Four shares of 2^32-2500 wrap to 10000 in uint32 arithmetic.
		{"split overflow", func(p *PriceTable) {
			p.Split = Split{math.MaxUint32 - 2499, math.MaxUint32 - 2499, math.MaxUint32 - 2499, math.MaxUint32 - 2499}
		}, "split.node_operator: 4294964796 basis points is more than 10000"},
	} {
		p := ok
		tc.edit(&p)
		err := p.Validate()
		if (err == nil && tc.err != "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
	if err := (Beneficiaries{}).Validate(); err == nil || err.Error() != "cluster_operator: empty" {
		t.Errorf("empty beneficiaries: %v", err)
	}
}

func TestBeneficiaries(t *testing.T) {
	b := Beneficiaries{
		NodeOperators: map[string]string{"n1": "op:x"},
		ImagePublishers: map[string]string{
			"ghcr.io/acme":         "pub:acme",
			"ghcr.io/acme/special": "pub:special",
			"quay.io/":             "pub:quay",
		},
	}
	for _, tc := range []struct{ image, want string }{
		{"ghcr.io/acme/tool:1", "pub:acme"},
		{"ghcr.io/acme/special@sha256:00", "pub:special"},
		{"ghcr.io/acme/specialist:2", "pub:acme"}, // prefix ends mid-name
		{"ghcr.io/acmecorp/tool", "ghcr.io/acmecorp"},
		{"quay.io/anyone/x", "pub:quay"},
		{"ubuntu", "docker.io/library"},
		{"ubuntu:22.04", "docker.io/library"},
		{"bitnami/redis:7", "docker.io/bitnami"},
		{"localhost:5000/app:1", "localhost:5000"},
		{"reg.local/team/app@sha256:ab", "reg.local/team"},
		{"", ""},
	} {
		if got := b.ImagePublisher(tc.image); got != tc.want {
			t.Errorf("ImagePublisher(%q) = %q, want %q", tc.image, got, tc.want)
		}
	}
	for node, want := range map[string]string{"n1": "op:x", "n2": "node:n2"} {
		if got := b.NodeOperator(node); got != want {
			t.Errorf("NodeOperator(%q) = %q, want %q", node, got, want)
		}
	}
}
