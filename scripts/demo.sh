#!/usr/bin/env bash
# Local demo cluster: 3 controllers and 3 agents on loopback, each agent with
# a software TPM (swtpm), then example jobs submitted as an ordinary user.
# node1 and node2 run the allowed agent binary and are admitted by
# attestation; node3 runs a tampered copy of it and is refused. Then the
# scheduling policies: accounts and QoS with sacctmgr, a two-node job with
# srun steps, a reservation, backfill with squeue --start, sprio and sshare,
# and a QoS preempting running jobs. Last, usage accounting: statements,
# sacct's charges and epochs, and the records verified against the epoch
# commitments anchored on c1's dev chain (geth --dev, which c1 runs from
# bin/tools/geth: `make demo` builds it). `demo.sh up` starts it
# and leaves it running; `demo.sh down` stops it (swtpm included) and
# removes its state.
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
# The cluster configuration: examples/cluster.toml, sealing epochs every
# few seconds, with c1's dev chain on a fixed port (see config()).
CONFIG=$ROOT/cluster.toml
CHAIN_RPC=http://127.0.0.1:7745

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# cmdline WHO ARGS...: prints a command as WHO would type it (on stderr, so
# that $(...) captures only the command's own output).
cmdline() {
	local who=$1 a line=
	shift
	for a in "$@"; do
		case $a in
		*\'*) line+=" \"$a\"" ;;
		*[[:space:]\$\;\&\|\<\>\(\)\*\"]*) line+=" '$a'" ;;
		*) line+=" $a" ;;
		esac
	done
	printf '\033[36m%s$%s\033[0m\n' "$who" "$line" >&2
}

# run CMD ARGS...: CMD is a Slurm command (a link to the stockade binary in
# bin/) or any other command.
run() {
	local c=$1
	shift
	if [ -x "$REPO/bin/$c" ]; then c=$REPO/bin/$c; fi
	"$c" "$@"
}

# as_admin / as_user: show a command, then run it as the admin (the
# STOCKADE_* variables up() exports) or as $DEMO_USER, with the user's CLI
# configuration, in $ROOT/work and with bin/ first on PATH: sbatch exports
# that environment to the job, whose srun calls then find the binary.
as_admin() {
	cmdline admin "$@"
	run "$@"
}
as_user() {
	cmdline "$DEMO_USER" "$@"
	(
		unset STOCKADE_TOKEN STOCKADE_SERVERS STOCKADE_CA
		export STOCKADE_CONFIG=$ROOT/$DEMO_USER.toml PATH=$REPO/bin:$PATH
		cd "$ROOT/work"
		run "$@"
	)
}

# submit VAR SBATCH-ARGS...: submits as the user, prints sbatch's answer and
# sets VAR to the job id.
submit() {
	local var=$1 out
	shift
	out=$(as_user sbatch "$@")
	echo "$out"
	case ${out##* } in
	'' | *[!0-9]*) echo "no job id in sbatch's answer: $out" >&2; return 1 ;;
	esac
	printf -v "$var" '%s' "${out##* }"
}

# job_state ID: the job's state as sacct reports it to the admin.
job_state() { "$BIN" sacct -n -X -j "$1" -o State%30 2>/dev/null | awk 'NR == 1 { print $1 }'; }
job_is() { [ "$(job_state "$1")" = "$2" ]; }
job_ended() {
	case $(job_state "$1") in
	'' | PENDING | RUNNING | REQUEUED | COMPLETING | SUSPENDED) return 1 ;;
	esac
}
queue_empty() { [ -z "$("$BIN" squeue -h)" ]; }
# has_start ID: the scheduler has planned a start time for the pending job.
has_start() { "$BIN" squeue --start -h -j "$1" -o %S | grep -q '^[0-9]'; }

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
	# c1's geth stops with c1 (SIGTERM when its parent dies): let it
	# finish writing before its directory goes.
	for _ in $(seq 100); do
		pgrep -f -- "--datadir $ROOT/" >/dev/null || break
		sleep 0.1
	done
	# Job shims outlive agents on purpose; the demo's must go too.
	pkill -KILL -f "$BIN shim $ROOT/" 2>/dev/null || true
	pkill -KILL -f "$TAMPERED shim $ROOT/" 2>/dev/null || true
	rm -rf "$ROOT"
}

# config writes $CONFIG: the example plus what the demo needs to show
# anchoring within seconds, unless the example already says.
config() {
	cp "$REPO/examples/cluster.toml" "$CONFIG"
	if ! grep -q '^\[accounting\]' "$CONFIG"; then
		printf '\n# The demo seals an epoch every 5 seconds (default 10 minutes).\n[accounting]\ninterval = "5s"\n' >>"$CONFIG"
	fi
	if ! grep -q '^\[chain\]' "$CONFIG"; then
		printf '\n# Anchors go to the dev chain that c1 runs (the default), here on a fixed port.\n[chain]\ndev_http = "%s"\n' \
			"${CHAIN_RPC#http://}" >>"$CONFIG"
	fi
}

up() {
	if [ -z "${STOCKADE_GETH:-}" ] && [ ! -x "$REPO/bin/tools/geth" ] && ! command -v geth >/dev/null; then
		echo "geth not found (c1 runs the dev chain with it): run \`make geth\` or \`make demo\`, or set STOCKADE_GETH" >&2
		exit 1
	fi
	down
	mkdir -p "$ROOT"/{logs,pids,work}
	config
	log "manufacturing a software TPM for node1-3 (swtpm, EK certificates from a local CA in $TPM/ca)"
	tpm_setup
	for n in 1 2 3; do tpm_start $n; done
	# The controllers trust EK certificates that chain to this bundle: the
	# local CA's root and the intermediate that signs the EK certificates.
	cat "$TPM/ca/swtpm-localca-rootca-cert.pem" "$TPM/ca/issuercert.pem" >"$TPM/ca-bundle.pem"

	log "starting controller c1 (bootstrap)"
	start c1 server --id c1 --data-dir "$ROOT/c1" --listen 127.0.0.1:7701 --raft 127.0.0.1:7702 \
		--bootstrap --config "$CONFIG" --tpm-ca-bundle "$TPM/ca-bundle.pem"
	wait_for 30 "c1's admin token" test -s "$ROOT/c1/admin-token"
	export STOCKADE_SERVERS=127.0.0.1:7701,127.0.0.1:7711,127.0.0.1:7721
	export STOCKADE_CA=$ROOT/c1/ca.pem
	STOCKADE_TOKEN=$(cat "$ROOT/c1/admin-token")
	export STOCKADE_TOKEN
	wait_for 30 "c1 to lead" "$BIN" status
	for n in 2 3; do
		log "starting controller c$n (join)"
		start c$n server --id c$n --data-dir "$ROOT/c$n" --listen 127.0.0.1:77$((n - 1))1 --raft 127.0.0.1:77$((n - 1))2 \
			--join 127.0.0.1:7701 --join-token-file "$ROOT/c1/controller-join-token" --config "$CONFIG" \
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
	log "job output (in $ROOT/work)"
	for f in "$ROOT"/work/*.out; do echo "--- $(basename "$f")"; head -5 "$f"; done
	policies
	accounting
	log "stockade status"
	"$BIN" status
	cat <<EOT

The demo cluster is still running (logs in $ROOT/logs, swtpm state in $TPM).
Use it as $DEMO_USER:   export STOCKADE_CONFIG=$ROOT/$DEMO_USER.toml
Use it as admin:   export STOCKADE_CONFIG=$ROOT/admin.toml
Put $REPO/bin on PATH (sbatch, squeue, scancel, sinfo, scontrol, sacct, sacctmgr, sprio, sshare, srun;
srun in a job is found on the PATH sbatch exports), then in $ROOT/work:
                   sbatch --wrap 'hostname'; squeue; sacct; sprio -l; sshare -a
                   sbatch srun.sbatch; sbatch long.sbatch; sbatch wide.sbatch; squeue --start
As admin:          sacctmgr list assoc; sacctmgr list qos; scontrol show reservation
Attestation:       stockade node list; stockade audit; stockade attest policy show; stockade node attest-log node1
Accounting:        stockade acct statement; sacct --format=JobID,State,Charge,Currency,Epoch; stockade acct verify --job ID
                   stockade acct proof --job ID >proof.json; stockade acct verify --proof proof.json --rpc $CHAIN_RPC
Stop it:           make demo-down
EOT
}

# policies shows the scheduling policies on the running cluster: node1 and
# node2 with 2 CPUs each, the QoS and partitions of examples/cluster.toml.
policies() {
	local SRUN TRAIN LONG WIDE SHORT LATER URGENT
	log "accounts, QoS and associations with sacctmgr (QoS normal and scavenger come from examples/cluster.toml)"
	as_admin sacctmgr add account physics Description="Physics group" Parent=root
	as_admin sacctmgr add qos high Description=deadlines Priority=100 Preempt=normal,scavenger MaxJobsPerUser=2
	as_admin sacctmgr add user "$DEMO_USER" Account=physics FairShare=2 QOS=normal,high DefaultQOS=normal
	as_admin sacctmgr list qos format=Name,Priority,Preempt%20,PreemptMode,GraceTime,MaxWall,MaxJobsPU,MaxTRESPU,UsageFactor
	as_admin sacctmgr list assoc format=Account,User,FairShare,QOS%24,DefaultQOS

	log "a two-node job: srun steps over node1 and node2 (partition debug admits only account physics)"
	as_user sbatch -p debug srun.sbatch || true
	submit SRUN -p debug -A physics srun.sbatch
	wait_for 90 "job $SRUN to end" job_ended "$SRUN"
	as_user cat "srun-$SRUN.out"
	as_user sacct -j "$SRUN" --format=JobID,JobName,Partition,Account,QOS,AllocCPUS,State,ExitCode,NodeList

	log "a reservation: node1 for $DEMO_USER, an hour from now"
	as_admin scontrol create reservation ReservationName=training StartTime=now+1hour Duration=1:00:00 \
		Users="$DEMO_USER" Nodes=node1
	as_admin scontrol show reservation
	submit TRAIN --reservation=training -J training -t 30:00 --mem=16M --wrap 'echo training on $SLURMD_NODENAME'

	log "backfill: long holds a node for up to 10 min, wide needs both, short (2 min) runs ahead of wide, later (20 min) waits"
	submit LONG long.sbatch
	wait_for 60 "job $LONG to start" job_is "$LONG" RUNNING
	submit WIDE wide.sbatch
	submit SHORT short.sbatch
	submit LATER -J later -n2 -t 20:00 --mem=32M --wrap 'echo later on $SLURMD_NODENAME; sleep 3'
	wait_for 60 "job $SHORT to be backfilled" job_is "$SHORT" RUNNING
	wait_for 30 "a start time for job $LATER" has_start "$LATER"
	as_user squeue
	as_user squeue --start

	log "priorities (sprio) and fair-share (sshare)"
	as_user sprio -l
	as_user sprio -w
	as_admin sshare -a -l

	log "preemption: urgent (QoS high, both nodes) requeues the normal jobs in its way"
	submit URGENT urgent.sbatch
	wait_for 60 "job $URGENT to start" job_is "$URGENT" RUNNING
	as_user squeue
	as_user scontrol show job "$LONG" | grep -E 'JobState|Restarts'
	wait_for 60 "job $URGENT to end" job_ended "$URGENT"
	as_user cat "urgent-$URGENT.out"
	as_user cat "long-$LONG.out"

	log "cancelling long and the reservation's job; the others run to the end"
	as_user scancel "$LONG" "$TRAIN"
	wait_for 180 "the queue to drain" queue_empty
	as_user cat "short-$SHORT.out" "wide-$WIDE.out"
	as_user sacct -X -j "$SRUN,$TRAIN,$LONG,$WIDE,$SHORT,$LATER,$URGENT" \
		--format=JobID,JobName,Partition,Account,QOS,State,ExitCode,Start,End,NodeList
	# sshare shows the rows of the local user name by default; the demo runs
	# as root with $DEMO_USER's token, so it names the user.
	as_user sshare -u "$DEMO_USER"
}

# ledger_settled: every record is sealed into an epoch and every epoch
# anchored.
ledger_settled() {
	local st
	st=$("$BIN" status --json) || return 1
	grep -q '"acct_unsealed_records": 0,' <<<"$st" && grep -q '"acct_unanchored_epochs": 0,' <<<"$st" &&
		! grep -q '"acct_last_sealed_epoch": 0,' <<<"$st"
}

# accounting shows the usage ledger of the jobs above: what they cost,
# in which epochs their records are, and that the records match the
# commitments anchored on chain, for the admin (every epoch) and for the
# user, whose proof file is checked against the chain alone.
accounting() {
	local ACCT
	log "usage accounting: every job that ran has a priced record, sealed into epochs anchored on c1's dev chain"
	submit ACCT -J accounted --mem=16M --wrap 'echo accounted on $SLURMD_NODENAME'
	wait_for 60 "job $ACCT to end" job_ended "$ACCT"
	log "waiting for the records to be sealed and anchored (an epoch every 5 s)"
	wait_for 90 "every epoch anchored" ledger_settled || true
	as_user stockade acct statement
	as_user sacct -X --format=JobID,JobName,State,Charge,Currency,Epoch
	as_admin stockade acct verify --all || echo "(verify exited $?)"
	log "a proof for job $ACCT, checked against the chain alone (no controller is asked)"
	as_user stockade acct proof --job "$ACCT" >"$ROOT/work/proof-$ACCT.json" || echo "(proof exited $?)"
	as_user stockade acct verify --proof "proof-$ACCT.json" --rpc "$CHAIN_RPC" || echo "(verify exited $?)"
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
