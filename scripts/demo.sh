#!/usr/bin/env bash
# Local demo cluster: 3 controllers and 2 agents on loopback, then example
# jobs submitted as an ordinary user. `demo.sh up` starts it and leaves it
# running; `demo.sh down` stops it and removes its state.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=$REPO/.demo
BIN=$REPO/bin/stockade
DEMO_USER=${DEMO_USER:-alice}
DEMO_UID=${DEMO_UID:-1001}

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

start() { # name, args...
	local name=$1; shift
	setsid nohup "$BIN" "$@" >"$ROOT/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$ROOT/pids/$name"
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
	rm -rf "$ROOT"
}

up() {
	down
	mkdir -p "$ROOT"/{logs,pids,work}
	log "starting controller c1 (bootstrap)"
	start c1 server --id c1 --data-dir "$ROOT/c1" --listen 127.0.0.1:7701 --raft 127.0.0.1:7702 \
		--bootstrap --config "$REPO/examples/cluster.toml"
	wait_for 30 "c1's admin token" test -s "$ROOT/c1/admin-token"
	export STOCKADE_SERVERS=127.0.0.1:7701,127.0.0.1:7711,127.0.0.1:7721
	export STOCKADE_CA=$ROOT/c1/ca.pem
	STOCKADE_TOKEN=$(cat "$ROOT/c1/admin-token")
	export STOCKADE_TOKEN
	wait_for 30 "c1 to lead" "$BIN" status
	for n in 2 3; do
		log "starting controller c$n (join)"
		start c$n server --id c$n --data-dir "$ROOT/c$n" --listen 127.0.0.1:77$((n - 1))1 --raft 127.0.0.1:77$((n - 1))2 \
			--join 127.0.0.1:7701 --join-token-file "$ROOT/c1/controller-join-token" --config "$REPO/examples/cluster.toml"
	done
	for n in 1 2; do
		log "starting agent node$n"
		start node$n agent --name node$n --servers "$STOCKADE_SERVERS" --state-dir "$ROOT/node$n" \
			--join-token-file "$ROOT/c1/agent-join-token" --cpus 2 --memory 2G --heartbeat 1s
	done
	wait_for 60 "3 controllers" bash -c "[ \$('$BIN' status --json | grep -o '\"raft_addr\"' | wc -l) -ge 3 ]"
	wait_for 60 "2 idle nodes" bash -c "[ \$('$BIN' sinfo -h -N -o '%t' | grep -c idle) -ge 2 ]"

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

The demo cluster is still running (logs in $ROOT/logs).
Use it as $DEMO_USER:   export STOCKADE_CONFIG=$ROOT/$DEMO_USER.toml
Use it as admin:   export STOCKADE_CONFIG=$ROOT/admin.toml
Then:              $BIN sbatch --wrap 'hostname'; $BIN squeue; $BIN sacct
(or put $REPO/bin on PATH to use sbatch, squeue, sinfo, scontrol, scancel, sacct)
Stop it:           make demo-down
EOT
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
