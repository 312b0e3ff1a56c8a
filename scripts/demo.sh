#!/usr/bin/env bash
# Local demo cluster: 3 controllers and 3 agents on loopback, each agent with
# a software TPM (swtpm), then example jobs submitted as an ordinary user.
# node1 and node2 run the allowed agent binary and are admitted by
# attestation; node3 runs a tampered copy of it and is refused. `demo.sh up`
# starts it and leaves it running; `demo.sh down` stops it (swtpm included)
# and removes its state.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=$REPO/.demo
BIN=$REPO/bin/stockade
TPM=$ROOT/tpm
# A copy of the agent binary with bytes appended: same behaviour, another
# digest, which the attestation policy does not allow.
TAMPERED=$ROOT/stockade-tampered
DEMO_USER=${DEMO_USER:-alice}
DEMO_UID=${DEMO_UID:-1001}

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

start_cmd() { # name, command, args...
	local name=$1; shift
	setsid nohup "$@" >"$ROOT/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$ROOT/pids/$name"
}

start() { # name, stockade args...
	local name=$1; shift
	start_cmd "$name" "$BIN" "$@"
}

# swtpm ports of node N: TPM commands (what the agent's --tpm names) and
# the control channel.
tpm_port() { echo $((7729 + 2 * $1)); }
ctrl_port() { echo $((7730 + 2 * $1)); }

# swtpm and its tools run with their configuration, temp files and CA under
# $TPM: nothing in /etc, $HOME or /var/lib/swtpm-localca is read or written.
TPM_ENV=(env "TMPDIR=$TPM/tmp" "XDG_CONFIG_HOME=$TPM/xdg")

# tpm_setup writes the configuration of a local CA that plays the TPM
# manufacturer: swtpm_setup has it sign each TPM's EK certificate.
tpm_setup() {
	mkdir -p "$TPM"/{ca,tmp,xdg}
	chmod 700 "$TPM"
	cat >"$TPM/swtpm-localca.conf" <<EOT
statedir = $TPM/ca
signingkey = $TPM/ca/signkey.pem
issuercert = $TPM/ca/issuercert.pem
certserial = $TPM/ca/certserial
EOT
	printf '%s\n' '--platform-manufacturer Stockade' '--platform-version 2.1' '--platform-model swtpm' \
		>"$TPM/swtpm-localca.options"
	cat >"$TPM/swtpm_setup.conf" <<EOT
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $TPM/swtpm-localca.conf
create_certs_tool_options = $TPM/swtpm-localca.options
active_pcr_banks = sha1,sha256
EOT
}

# tpm_start manufactures node N's TPM (an EK with a certificate from the
# local CA, a platform certificate) and runs swtpm on it.
tpm_start() {
	local n=$1 dir=$TPM/node$1
	mkdir -p "$dir/state"
	"${TPM_ENV[@]}" swtpm_setup --tpm2 --tpmstate "$dir/state" --config "$TPM/swtpm_setup.conf" \
		--create-ek-cert --create-platform-cert --pcr-banks sha1,sha256 --overwrite \
		--logfile "$dir/swtpm_setup.log" >/dev/null
	start_cmd "swtpm-node$n" "${TPM_ENV[@]}" swtpm socket --tpm2 --tpmstate "dir=$dir/state" \
		--server "type=tcp,port=$(tpm_port "$n"),bindaddr=127.0.0.1" \
		--ctrl "type=tcp,port=$(ctrl_port "$n"),bindaddr=127.0.0.1" \
		--flags not-need-init,startup-clear --log "file=$dir/swtpm.log"
	# The control channel answers once swtpm runs; probing it leaves the
	# command port (one client at a time) to the agent.
	wait_for 10 "swtpm of node$n" bash -c "exec 3<>/dev/tcp/127.0.0.1/$(ctrl_port "$n")"
}

wait_for() { # seconds, description, command...
	local secs=$1 what=$2; shift 2
	for ((i = 0; i < secs * 10; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for $what" >&2
	return 1
}

down() {
	if [ -d "$ROOT/pids" ]; then
		for f in "$ROOT"/pids/*; do
			[ -e "$f" ] || continue
			kill -TERM "$(cat "$f")" 2>/dev/null || true
		done
		sleep 1
		for f in "$ROOT"/pids/*; do
			[ -e "$f" ] || continue
			kill -KILL "$(cat "$f")" 2>/dev/null || true
		done
	fi
	# Job shims outlive agents on purpose; the demo's must go too.
	pkill -KILL -f "$BIN shim $ROOT/" 2>/dev/null || true
	pkill -KILL -f "$TAMPERED shim $ROOT/" 2>/dev/null || true
	rm -rf "$ROOT"
}

up() {
	down
	mkdir -p "$ROOT"/{logs,pids,work}
	log "manufacturing a software TPM for node1-3 (swtpm, EK certificates from a local CA in $TPM/ca)"
	tpm_setup
	for n in 1 2 3; do tpm_start $n; done
	# The controllers trust EK certificates that chain to this bundle: the
	# local CA's root and the intermediate that signs the EK certificates.
	cat "$TPM/ca/swtpm-localca-rootca-cert.pem" "$TPM/ca/issuercert.pem" >"$TPM/ca-bundle.pem"

	log "starting controller c1 (bootstrap)"
	start c1 server --id c1 --data-dir "$ROOT/c1" --listen 127.0.0.1:7701 --raft 127.0.0.1:7702 \
		--bootstrap --config "$REPO/examples/cluster.toml" --tpm-ca-bundle "$TPM/ca-bundle.pem"
	wait_for 30 "c1's admin token" test -s "$ROOT/c1/admin-token"
	export STOCKADE_SERVERS=127.0.0.1:7701,127.0.0.1:7711,127.0.0.1:7721
	export STOCKADE_CA=$ROOT/c1/ca.pem
	STOCKADE_TOKEN=$(cat "$ROOT/c1/admin-token")
	export STOCKADE_TOKEN
	wait_for 30 "c1 to lead" "$BIN" status
	for n in 2 3; do
		log "starting controller c$n (join)"
		start c$n server --id c$n --data-dir "$ROOT/c$n" --listen 127.0.0.1:77$((n - 1))1 --raft 127.0.0.1:77$((n - 1))2 \
			--join 127.0.0.1:7701 --join-token-file "$ROOT/c1/controller-join-token" --config "$REPO/examples/cluster.toml" \
			--tpm-ca-bundle "$TPM/ca-bundle.pem"
	done

	log "allowing the agent binary in the attestation policy"
	"$BIN" attest policy add-digest --file "$BIN"
	for n in 1 2; do
		log "starting agent node$n (TPM enrollment)"
		start node$n agent --name node$n --servers "$STOCKADE_SERVERS" --state-dir "$ROOT/node$n" \
			--tpm "swtpm:127.0.0.1:$(tpm_port $n)" --ca-cert "$ROOT/c1/ca.pem" --cpus 2 --memory 2G --heartbeat 1s
	done
	log "starting agent node3 from a tampered copy of the binary ($TAMPERED)"
	cp "$BIN" "$TAMPERED"
	printf '\ntampered\n' >>"$TAMPERED"
	chmod 755 "$TAMPERED"
	start_cmd node3 "$TAMPERED" agent --name node3 --servers "$STOCKADE_SERVERS" --state-dir "$ROOT/node3" \
		--tpm "swtpm:127.0.0.1:$(tpm_port 3)" --ca-cert "$ROOT/c1/ca.pem" --cpus 2 --memory 2G --heartbeat 1s
	wait_for 60 "3 controllers" bash -c "[ \$('$BIN' status --json | grep -o '\"raft_addr\"' | wc -l) -ge 3 ]"
	wait_for 60 "2 idle nodes" bash -c "[ \$('$BIN' sinfo -h -N -o '%t' | grep -c idle) -ge 2 ]"
	wait_for 60 "node3's refusal" bash -c "'$BIN' audit --node node3 | grep -q refused"
	log "stockade node list (node1 and node2 attested; node3 was never admitted)"
	"$BIN" node list
	log "stockade audit (node3 refused: agent-binary-not-allowed)"
	"$BIN" audit
	echo "digest allowed:    sha256:$(sha256sum "$BIN" | cut -d' ' -f1)"
	echo "node3 measured:    sha256:$(sha256sum "$TAMPERED" | cut -d' ' -f1)"

	log "adding user $DEMO_USER (uid $DEMO_UID)"
	"$BIN" user add "$DEMO_USER" --account research --uid "$DEMO_UID" --gid "$DEMO_UID" >"$ROOT/user.out"
	sed -n 's/^token: *//p' "$ROOT/user.out" >"$ROOT/$DEMO_USER.token"
	chmod 600 "$ROOT/$DEMO_USER.token"
	cat >"$ROOT/$DEMO_USER.toml" <<EOT
servers = ["127.0.0.1:7701", "127.0.0.1:7711", "127.0.0.1:7721"]
token_file = "$ROOT/$DEMO_USER.token"
ca_file = "$ROOT/c1/ca.pem"
EOT
	cat >"$ROOT/admin.toml" <<EOT
servers = ["127.0.0.1:7701", "127.0.0.1:7711", "127.0.0.1:7721"]
token_file = "$ROOT/c1/admin-token"
ca_file = "$ROOT/c1/ca.pem"
EOT
	chown "$DEMO_UID:$DEMO_UID" "$ROOT/work"
	cp examples/*.sbatch "$ROOT/work/"
	chown "$DEMO_UID:$DEMO_UID" "$ROOT"/work/*

	log "submitting example jobs as $DEMO_USER"
	(
		unset STOCKADE_TOKEN STOCKADE_SERVERS STOCKADE_CA
		export STOCKADE_CONFIG=$ROOT/$DEMO_USER.toml
		cd "$ROOT/work"
		"$BIN" sbatch array.sbatch
		prep=$("$BIN" sbatch --parsable prepare.sbatch)
		comp=$("$BIN" sbatch --parsable --dependency=afterok:$prep compute.sbatch)
		"$BIN" sbatch --dependency=afterany:$comp report.sbatch
		"$BIN" sbatch oom.sbatch
		"$BIN" sbatch timeout.sbatch
		"$BIN" sbatch cpu-burn.sbatch
		"$BIN" sbatch --wrap 'echo wrapped command on $(hostname)' -J wrap-demo
		echo
		"$BIN" squeue
	)
	log "waiting for the queue to drain"
	wait_for 120 "the queue to drain" bash -c "[ -z \"\$('$BIN' squeue -h)\" ]" || true
	log "squeue"
	"$BIN" squeue
	log "sinfo"
	"$BIN" sinfo
	log "sacct"
	"$BIN" sacct -a --format=JobID,JobName,User,State,ExitCode,Elapsed,TotalCPU,MaxRSS,NodeList
	log "stockade status"
	"$BIN" status
	log "job output (in $ROOT/work)"
	for f in "$ROOT"/work/*.out; do echo "--- $(basename "$f")"; head -5 "$f"; done
	cat <<EOT

The demo cluster is still running (logs in $ROOT/logs, swtpm state in $TPM).
Use it as $DEMO_USER:   export STOCKADE_CONFIG=$ROOT/$DEMO_USER.toml
Use it as admin:   export STOCKADE_CONFIG=$ROOT/admin.toml
Then:              $BIN sbatch --wrap 'hostname'; $BIN squeue; $BIN sacct
Attestation:       $BIN node list; $BIN audit; $BIN attest policy show; $BIN node attest-log node1
(or put $REPO/bin on PATH to use sbatch, squeue, sinfo, scontrol, scancel, sacct)
Stop it:           make demo-down
EOT
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
