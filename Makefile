# Stockade. The README's two commands: `make demo` and `make test`.
SHELL      := /bin/bash
GO         ?= go
BIN        := bin/stockade
PREFIX     ?= /usr/local
GOTAGS     := seccomp
export CGO_ENABLED := 1
# Debian packages the build, the tests and the demo need.
APT_PKGS   := libseccomp-dev busybox-static iproute2 procps swtpm swtpm-tools tpm2-tools libssl-dev
SLURM_LINKS := sbatch squeue scancel sinfo scontrol sacct sacctmgr sprio sshare srun

.PHONY: all deps build install test test-unit test-integration fuzz bench demo demo-down clean vet

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

build: deps
	$(GO) build -tags $(GOTAGS) -o $(BIN) ./cmd/stockade
	@for l in $(SLURM_LINKS); do ln -sf stockade bin/$$l; done

# geth goes to bin/tools/ beside stockade, where controllers look for it.
install: build geth
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/stockade
	install -D -m 0755 $(GETH) $(DESTDIR)$(PREFIX)/bin/tools/geth
	@for l in $(SLURM_LINKS); do ln -sf stockade $(DESTDIR)$(PREFIX)/bin/$$l; done

vet:
	$(GO) vet -tags $(GOTAGS) ./...

# Unit tests, then integration tests that start real controllers and agents.
# Both run the anchoring tests against a real `geth --dev` (the geth target
# below), which fail rather than skip under CI=true when geth is missing.
test: build vet test-unit test-integration

test-unit: geth
	STOCKADE_GETH=$(CURDIR)/$(GETH) $(GO) test -tags $(GOTAGS) -count=1 -p 1 -timeout 20m $$($(GO) list ./... | grep -v /tests)

test-integration: build geth
	STOCKADE_GETH=$(CURDIR)/$(GETH) STOCKADE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags $(GOTAGS) -count=1 -timeout 25m -v ./tests/...

# Short fuzzing sessions; the corpora live in each package's testdata/fuzz.
FUZZTIME ?= 20s
fuzz:
	$(GO) test ./internal/sbatch -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/hostlist -run '^$$' -fuzz '^FuzzExpand$$' -fuzztime $(FUZZTIME)

# Benchmarks print their figure next to a baseline measured in the same run.
bench: build
	STOCKADE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags $(GOTAGS) -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/...
	$(GO) test -tags $(GOTAGS) -run '^$$' -bench StartLatency -benchtime 40x -timeout 10m ./executor/
	$(GO) test -run '^$$' -bench 'Schedule|Backfill|Priorit' -timeout 10m ./scheduler/
	$(GO) test -run '^$$' -bench . -timeout 10m ./accounting/
	$(GO) test -run '^$$' -bench CommandConnection -timeout 10m ./internal/cli/
	$(GO) test -tags $(GOTAGS) -run '^$$' -bench . -timeout 10m ./attest/

demo: build geth
	./scripts/demo.sh up

demo-down:
	./scripts/demo.sh down

clean:
	rm -rf bin

# Scheduling simulation (README, "Scheduling simulation"): the real scheduler
# in virtual time on simulated nodes. The NASA iPSC/860 trace at its own load
# and with arrivals compressed 1.5×, a synthetic workload, then single passes
# over 10,000 nodes and 100,000 pending jobs. The simulator needs no seccomp,
# so it gets its own binary and `make build`'s packages are not required.
SIM_BIN   := bin/stockade-sim
SIM_TRACE := bench/testdata/NASA-iPSC-1993-3.1-cln.swf.gz
.PHONY: sim bench-sim sim-bin
sim-bin:
	$(GO) build -o $(SIM_BIN) ./cmd/stockade

sim: sim-bin
	$(SIM_BIN) sim --trace $(SIM_TRACE) --nodes 128 --cpus-per-node 1 --policy all
	$(SIM_BIN) sim --trace $(SIM_TRACE) --nodes 128 --cpus-per-node 1 --policy all --load-scale 1.5
	$(SIM_BIN) sim --synthetic 20000 --nodes 1000 --cpus-per-node 32 --policy all
	$(SIM_BIN) sim --stress --nodes 10000 --cpus-per-node 32 --pending 100000 --policy all

# A million jobs on 10,000 nodes, passes every 30 virtual seconds (a pass at
# every event would take an hour per policy on two cores).
bench-sim: sim-bin
	$(SIM_BIN) sim --synthetic 1000000 --nodes 10000 --cpus-per-node 32 --policy all --interval 30

# Slurm 22.05 (Debian's packages, installed if missing) and Stockade side by
# side on this host: the same trivial jobs through each one's sbatch. Takes
# about half an hour (Slurm is slow); see bench/slurm/README.md.
.PHONY: bench-slurm
bench-slurm: build
	./bench/slurm/run.sh

# geth, the dev chain's node: a controller runs `geth --dev` as a child
# process, found beside bin/stockade as bin/tools/geth (or $STOCKADE_GETH).
# The anchoring tests run it too (`make test` passes STOCKADE_GETH). Pinned:
# v1.17.8 is the newest geth command that builds from the module proxy.
# Skipped when the right version is already there.
GETH_VERSION := 1.17.8
GETH         := bin/tools/geth
.PHONY: geth
geth:
	@if $(GETH) version 2>/dev/null | grep -qx 'Version: $(GETH_VERSION)-stable'; then \
	  echo "$(GETH) $(GETH_VERSION) present"; \
	else \
	  mkdir -p $(dir $(GETH)) && GOBIN=$(CURDIR)/$(dir $(GETH)) $(GO) install github.com/ethereum/go-ethereum/cmd/geth@v$(GETH_VERSION); \
	fi
