#!/usr/bin/env bash
# `make bench-slurm`: the same N trivial jobs (`true`, 1 CPU) submitted with
# sbatch to Slurm 22.05 (Debian's packages, one node: this host) and to
# Stockade (3 controllers and agents on this host, jobs in containers), one
# system at a time, from the same number of parallel sbatch clients. Slurm
# runs out of the box and with each tuned configuration of configs/. Then
# the same jobs through each system's REST API from long-lived clients
# (slurmrestd; Stockade's /v1 API). See bench/slurm/README.md.
#
#   bench/slurm/run.sh            everything: install, Slurm runs, Stockade run, report
#   bench/slurm/run.sh slurm CONFIG [N]   one Slurm run (configs/CONFIG.conf)
#   bench/slurm/run.sh stockade [N]       one Stockade run
#   bench/slurm/run.sh report             the table from the runs in _run/results/
#   bench/slurm/run.sh slurm-up CONFIG | stockade-up | down   start one and leave it running; stop
#
#   bench/slurm/run.sh slurm-held CONFIG [N] | stockade-held [N]   submission alone (held jobs)
#   bench/slurm/run.sh slurm-api CONFIG [N] | stockade-api [N]     the same through the REST APIs
#   bench/slurm/run.sh slurm-api-run CONFIG [N] | stockade-api-run [N]   REST APIs, jobs run
#
# Environment: BENCH_JOBS (1000), BENCH_JOBS_DEFAULT (200: Slurm out of the
# box is slow), BENCH_CLIENTS (8 parallel sbatch or API clients), BENCH_SLURM_CONFIGS
# (which configs/*.conf; default: those not marked "in-default-run: no"),
# BENCH_HELD (1: also measure submission alone), BENCH_SLURM_HELD_CONFIG
# (tuned-builtin-defer), BENCH_API (1: also submit through the REST APIs,
# held jobs), BENCH_API_RUN (1: and through the APIs with jobs running),
# BENCH_SLURM_API_CONFIG (tuned-builtin-defer), BENCH_STOCKADE_AGENTS (1:
# one agent with all the CPUs, as Slurm's one node), BENCH_CPUS (nproc).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
HERE=$REPO/bench/slurm
RUN=$HERE/_run # "_": the go tool skips it (go mod tidy, ./...)
# A private copy of `make build`'s binary: the tree may be rebuilt while the
# benchmark runs.
BUILT=$REPO/bin/stockade
BIN=$RUN/bin/stockade
DRIVER=$RUN/slurm-bench
RESULTS=$RUN/results

JOBS=${BENCH_JOBS:-1000}
JOBS_DEFAULT=${BENCH_JOBS_DEFAULT:-200}
CLIENTS=${BENCH_CLIENTS:-8}
CPUS=${BENCH_CPUS:-$(nproc)}
AGENTS=${BENCH_STOCKADE_AGENTS:-1}
CTLD_PORT=${BENCH_SLURMCTLD_PORT:-16817}
API_PORT=${BENCH_STOCKADE_PORT:-17701} # controllers use API_PORT + 10*i and + 1 for Raft
BENCH_UID=1601

SLURM_DIR=$RUN/slurm
MUNGE_SOCKET=$SLURM_DIR/munge-run/munge.socket
SLURMRESTD_SOCKET=$SLURM_DIR/run/slurmrestd.sock
SLURM_API_CONFIG=${BENCH_SLURM_API_CONFIG:-${BENCH_SLURM_HELD_CONFIG:-tuned-builtin-defer}}
STK=$RUN/stockade
CGROUP_PARENT=/stockade-bench

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

wait_for() { # seconds, description, command...
	local secs=$1 what=$2; shift 2
	for ((i = 0; i < secs * 10; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for $what" >&2
	return 1
}

# ---------------------------------------------------------------- CPU accounting

# Each side's daemons run in a cgroup of their own (cgroup v1 cpuacct or
# v2), so the driver can report the CPU time they use per job, and
# Stockade's job containers' (the agents make their cgroups under
# $CGROUP_PARENT). The driver measures its sbatch processes itself.
cg_base() {
	if [ -d /sys/fs/cgroup/cpuacct ]; then
		echo /sys/fs/cgroup/cpuacct
	elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		echo /sys/fs/cgroup
	fi
}

cg_dir() { local b; b=$(cg_base); [ -n "$b" ] && echo "$b/bench-slurm/$1"; }

# cg_join moves the calling (sub)shell into a group: what it starts is
# accounted there.
cg_join() {
	local d
	d=$(cg_dir "$1") || return 0
	mkdir -p "$d" 2>/dev/null && echo "$BASHPID" >"$d/cgroup.procs" 2>/dev/null || true
}

# cpu_flags prints the driver's -cpu flags for the groups given as
# NAME=GROUP (GROUP under bench-slurm/, or an absolute cgroup path).
cpu_flags() {
	local b kv name g
	b=$(cg_base) || return 0
	[ -n "$b" ] || return 0
	for kv in "$@"; do
		name=${kv%%=*} g=${kv#*=}
		case "$g" in /*) g=$b$g ;; *) g=$b/bench-slurm/$g ;; esac
		mkdir -p "$g" 2>/dev/null || continue
		printf '%s\n' -cpu "$name=$g"
	done
}

cg_remove() {
	local b
	b=$(cg_base) || return 0
	[ -n "$b" ] && [ -d "$b/bench-slurm" ] && find "$b/bench-slurm" -depth -type d -exec rmdir {} + 2>/dev/null || true
}

# ---------------------------------------------------------------- cleanup

# kill_pidfile stops the process whose pid a file holds (TERM, then KILL).
kill_pidfile() {
	local f=$1 pid
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	if kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

slurm_down() {
	kill_pidfile "$SLURM_DIR/run/slurmrestd.pid"
	kill_pidfile "$SLURM_DIR/run/slurmd.pid"
	kill_pidfile "$SLURM_DIR/run/slurmctld.pid"
	kill_pidfile "$SLURM_DIR/munge-run/munged.pid"
}

# our_shims lists the pids of the job shims this run's agents started
# (their command line names this run's state directory).
our_shims() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case "$cmd" in "$BIN shim $STK/"*) echo "${p#/proc/}" ;; esac
	done
}

stockade_down() {
	local f pid
	for f in "$STK"/pids/node*; do [ -e "$f" ] && kill_pidfile "$f"; done
	for f in "$STK"/pids/c*; do [ -e "$f" ] && kill_pidfile "$f"; done
	for pid in $(our_shims); do kill -KILL "$pid" 2>/dev/null || true; done
	# Jobs still in the benchmark's cgroups, then the cgroups.
	if [ -d /sys/fs/cgroup/pids$CGROUP_PARENT ]; then
		find /sys/fs/cgroup/pids$CGROUP_PARENT -name cgroup.procs -exec cat {} + 2>/dev/null |
			while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done
		sleep 0.2
	fi
	local c
	for c in /sys/fs/cgroup/*; do
		[ -d "$c$CGROUP_PARENT" ] && find "$c$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	slurm_down
	stockade_down
	cg_remove
	exit "$rc"
}

# ---------------------------------------------------------------- setup

install_slurm() {
	local missing="" p
	for p in slurmctld slurmd slurm-client slurmrestd munge; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		log "installing Debian's Slurm:$missing"
		# The packages' services are not started (no systemd here, or
		# policy-rc.d): run.sh starts its own daemons.
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
	fi
	log "$(slurmctld -V), $(munged -V 2>&1 | head -1)"
}

build_driver() {
	mkdir -p "$RUN" "$RESULTS"
	(cd "$REPO" && go build -o "$DRIVER" ./bench/slurm)
}

copy_stockade() {
	[ -x "$BUILT" ] || { echo "$BUILT is missing: make build" >&2; exit 1; }
	mkdir -p "$RUN/bin"
	cp "$BUILT" "$BIN.new" && mv -f "$BIN.new" "$BIN"
	ln -sf stockade "$RUN/bin/sbatch"
}

# ---------------------------------------------------------------- Slurm

# conf_value CONFIG KEY prints the value of a "# KEY: value" line of a
# configs/ file.
conf_value() { sed -n "s/^# $2: *//p" "$HERE/configs/$1.conf" | head -1; }

slurm_up() { # config
	local cfg=$1 threads
	slurm_down
	rm -rf "$SLURM_DIR"
	mkdir -p "$SLURM_DIR"/{state,spool,log,run,work,munge-key,munge-run}
	chmod 700 "$SLURM_DIR/munge-key"
	chmod 755 "$SLURM_DIR" "$SLURM_DIR/munge-run"
	mungekey --create --keyfile="$SLURM_DIR/munge-key/munge.key" >/dev/null
	threads=$(conf_value "$cfg" munged-threads)
	(
		cg_join slurm
		munged --socket="$MUNGE_SOCKET" --key-file="$SLURM_DIR/munge-key/munge.key" \
			--pid-file="$SLURM_DIR/munge-run/munged.pid" --log-file="$SLURM_DIR/log/munged.log" \
			--seed-file="$SLURM_DIR/munge-key/munged.seed" --num-threads="${threads:-2}"
	)
	local mem ports
	mem=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
	ports=$(conf_value "$cfg" slurmctld-ports)
	ports=${ports:-1}
	{
		cat "$HERE/slurm.conf.in"
		printf '\n# ---- configs/%s.conf\n' "$cfg"
		cat "$HERE/configs/$cfg.conf"
	} | sed -e "s|@BASE@|$SLURM_DIR|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" \
		-e "s|@CTLD_PORTS@|$CTLD_PORT$( ((ports > 1)) && echo "-$((CTLD_PORT + ports - 1))")|g" \
		-e "s|@SLURMD_PORT@|$((CTLD_PORT + 10))|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY_MB@|$mem|g" \
		>"$SLURM_DIR/slurm.conf"
	export SLURM_CONF=$SLURM_DIR/slurm.conf
	(
		cg_join slurm
		slurmctld -f "$SLURM_CONF"
		slurmd -f "$SLURM_CONF" -N localhost
	)
	wait_for 60 "the Slurm node to be idle" bash -c "sinfo -h -N -o '%t' | grep -qx idle"
}

# slurmrestd_up starts slurmrestd for the running slurmctld: OpenAPI
# v0.0.38 on a Unix socket with rest_auth/local, which takes the connecting
# process's uid from the socket (SO_PEERCRED) and signs slurmrestd's RPCs
# to slurmctld with munge, as sbatch does. The client must run as
# slurmrestd's own uid: root, as the sbatch runs submit as root (Slurm needs
# a passwd entry; `bench` has none). slurmrestd refuses to run as root or
# SlurmUser (root here) unless SLURMRESTD_SECURITY=disable_user_check.
slurmrestd_up() {
	rm -f "$SLURMRESTD_SOCKET"
	(
		cg_join slurmrestd
		export SLURMRESTD_SECURITY=disable_user_check
		exec setsid slurmrestd -f "$SLURM_CONF" -a rest_auth/local -s openapi/v0.0.38 "unix:$SLURMRESTD_SOCKET" \
			>"$SLURM_DIR/log/slurmrestd.log" 2>&1 </dev/null
	) &
	echo $! >"$SLURM_DIR/run/slurmrestd.pid"
	wait_for 30 "slurmrestd's socket" test -S "$SLURMRESTD_SOCKET"
}

# run_name BASE DRIVER-FLAGS... names a run's result file: BASE, then -api
# (through the REST API), then -held.
run_name() {
	local name=$1 api="" held="" f
	shift
	for f in "$@"; do
		case "$f" in -hold) held=-held ;; api) api=-api ;; esac
	done
	echo "$name$api$held"
}

is_api() { case " $* " in *" -via api "*) return 0 ;; esac; return 1; }
is_held() { case " $* " in *" -hold "*) return 0 ;; esac; return 1; }

slurm_run() { # config, jobs [, driver flags]
	local cfg=$1 n=$2 extra=("${@:3}") name settings how="sbatch clients"
	name=$(run_name "slurm-$cfg" "${extra[@]}")
	settings=$(conf_value "$cfg" settings)
	local groups=("munged+slurmctld+slurmd+slurmstepd+jobs=slurm")
	if is_api "${extra[@]}"; then
		how="REST API clients (slurmrestd)"
		settings="$settings; through slurmrestd 22.05 (openapi/v0.0.38, rest_auth/local on a Unix socket, 20 threads), one HTTP/1.1 keep-alive connection per client"
		groups+=("slurmrestd=slurmrestd")
		extra+=(-socket "$SLURMRESTD_SOCKET")
	fi
	log "Slurm, configs/$cfg.conf: $n jobs from $CLIENTS $how ($settings)"
	slurm_up "$cfg"
	is_api "${extra[@]}" && slurmrestd_up
	local cpu
	mapfile -t cpu < <(cpu_flags "${groups[@]}")
	(cd "$SLURM_DIR/work" && exec "$DRIVER" run -system slurm -config "$cfg" -settings "$settings" \
		-n "$n" -clients "$CLIENTS" -sbatch "$(command -v sbatch)" -dir "$SLURM_DIR/work" \
		-jobcomp "$SLURM_DIR/jobcomp.txt" -out "$RESULTS/$name.json" "${cpu[@]}" "${extra[@]}")
	slurm_down
}

# ---------------------------------------------------------------- Stockade

stk_start() { # name, stockade args...
	local name=$1; shift
	(cg_join stockade && exec setsid nohup "$BIN" "$@" >"$STK/logs/$name.log" 2>&1 </dev/null) &
	echo $! >"$STK/pids/$name"
}

stockade_up() {
	stockade_down
	rm -rf "$STK"
	mkdir -p "$STK"/{logs,pids,work}
	chmod 755 "$RUN" "$STK"
	cat >"$STK/cluster.toml" <<EOT
cluster_name = "bench"
[[partitions]]
name = "batch"
nodes = "node[1-$AGENTS]"
default = true
max_time = "1-00:00:00"
default_time = "1:00:00"
def_mem_per_cpu = "64M"
EOT
	local servers="" i
	for i in 1 2 3; do servers="$servers${servers:+,}127.0.0.1:$((API_PORT + 10 * (i - 1)))"; done
	export STOCKADE_SERVERS=$servers STOCKADE_CONFIG=/nonexistent
	stk_start c1 server --id c1 --data-dir "$STK/c1" --listen "127.0.0.1:$API_PORT" --raft "127.0.0.1:$((API_PORT + 1))" \
		--bootstrap --config "$STK/cluster.toml"
	wait_for 30 "c1's admin token" test -s "$STK/c1/admin-token"
	export STOCKADE_CA=$STK/c1/ca.pem
	STOCKADE_TOKEN=$(cat "$STK/c1/admin-token")
	export STOCKADE_TOKEN
	wait_for 30 "c1 to lead" "$BIN" status
	for i in 2 3; do
		local port=$((API_PORT + 10 * (i - 1)))
		stk_start c$i server --id c$i --data-dir "$STK/c$i" --listen "127.0.0.1:$port" --raft "127.0.0.1:$((port + 1))" \
			--join "127.0.0.1:$API_PORT" --join-token-file "$STK/c1/controller-join-token" --config "$STK/cluster.toml"
	done
	# The machine's CPUs, split between the agents (Slurm gets them all as
	# one node).
	for ((i = 1; i <= AGENTS; i++)); do
		local cpus=$((CPUS / AGENTS + (i <= CPUS % AGENTS ? 1 : 0)))
		stk_start node$i agent --name node$i --state-dir "$STK/node$i" --join-token-file "$STK/c1/agent-join-token" \
			--cpus "$cpus" --memory 4G --cgroup-parent "$CGROUP_PARENT/node$i"
	done
	wait_for 60 "3 controllers" bash -c "[ \$('$BIN' status --json | grep -o '\"raft_addr\"' | wc -l) -ge 3 ]"
	wait_for 60 "$AGENTS idle nodes" bash -c "[ \$('$BIN' sinfo -h -N -o '%t' | grep -c idle) -ge $AGENTS ]"
	"$BIN" user add bench --account research --uid $BENCH_UID --gid $BENCH_UID >"$STK/user.out"
	BENCH_TOKEN=$(sed -n 's/^token: *//p' "$STK/user.out")
	chown "$BENCH_UID:$BENCH_UID" "$STK/work"
}

stockade_run() { # jobs [, driver flags]
	local n=$1 extra=("${@:2}") name how="sbatch clients"
	local settings="3 controllers (Raft), $AGENTS agent(s), $CPUS CPUs, every job in a container, defaults"
	name=$(run_name stockade "${extra[@]}")
	if is_api "${extra[@]}"; then
		how="REST API clients (api.Client)"
		settings="$settings; through the /v1 API: one api.Client per client (HTTPS, HTTP/2, one connection each), user bench's token"
	fi
	log "Stockade: 3 controllers, $AGENTS agent(s) with $CPUS CPUs in all: $n jobs from $CLIENTS $how"
	stockade_up
	local cpu
	mapfile -t cpu < <(cpu_flags "3 controllers+agents+shims=stockade" "job containers=$CGROUP_PARENT")
	(cd "$STK/work" && STOCKADE_TOKEN=$BENCH_TOKEN exec "$DRIVER" run -system stockade -config stockade \
		-settings "$settings" \
		-n "$n" -clients "$CLIENTS" -sbatch "$RUN/bin/sbatch" -dir "$STK/work" -user bench \
		-out "$RESULTS/$name.json" "${cpu[@]}" "${extra[@]}")
	is_held "${extra[@]}" || { log "Stockade's sacct for the first jobs (CPU time metered from each job's cgroup)" &&
		{ "$BIN" sacct -a -X -u bench --format=JobID,JobName,State,ExitCode,Submit,Start,End,TotalCPU,NodeList | head -6 || true; }; }
	stockade_down
}

# ---------------------------------------------------------------- main

report() {
	local files=() f group
	# With sbatch: Slurm out of the box, tuned Slurm, Stockade, then the
	# held runs; then through the REST APIs: held, then with jobs running.
	for group in sbatch held api-held api; do
		for f in "$RESULTS"/slurm-default.json "$RESULTS"/slurm-*.json "$RESULTS"/stockade*.json; do
			[ -e "$f" ] || continue
			case "$f" in
			*-api-held.json) [ $group = api-held ] || continue ;;
			*-api.json) [ $group = api ] || continue ;;
			*-held.json) [ $group = held ] || continue ;;
			*) [ $group = sbatch ] || continue ;;
			esac
			case " ${files[*]} " in *" $f "*) continue ;; esac
			files+=("$f")
		done
	done
	"$DRIVER" report -out "$HERE/results.json" \
		-host "$(nproc) CPUs, $(awk '/MemTotal/ {printf "%d GiB", $2 / 1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), $(slurmctld -V)" \
		"${files[@]}"
}

slurm_configs() {
	if [ -n "${BENCH_SLURM_CONFIGS:-}" ]; then
		echo "$BENCH_SLURM_CONFIGS"
	else
		for f in "$HERE"/configs/*.conf; do
			grep -q '^# in-default-run: no' "$f" || basename "$f" .conf
		done
	fi
}

main() {
	[ "$(id -u)" = 0 ] || { echo "run.sh needs root (Stockade's containers, Slurm's daemons)" >&2; exit 1; }
	trap cleanup EXIT INT TERM
	case "${1:-all}" in
	all)
		install_slurm
		build_driver
		copy_stockade
		rm -f "$RESULTS"/*.json
		for cfg in $(slurm_configs); do
			if [ "$cfg" = default ]; then
				slurm_run default "$JOBS_DEFAULT"
			else
				slurm_run "$cfg" "$JOBS"
			fi
		done
		stockade_run "$JOBS"
		if [ "${BENCH_HELD:-1}" = 1 ]; then
			# Submission alone: held jobs, none running meanwhile.
			slurm_run "${BENCH_SLURM_HELD_CONFIG:-tuned-builtin-defer}" "$JOBS" -hold
			stockade_run "$JOBS" -hold
		fi
		if [ "${BENCH_API:-1}" = 1 ]; then
			# The same jobs through each system's REST API, from long-lived
			# clients: held (submission alone), then running.
			slurm_run "$SLURM_API_CONFIG" "$JOBS" -via api -hold
			stockade_run "$JOBS" -via api -hold
			if [ "${BENCH_API_RUN:-1}" = 1 ]; then
				slurm_run "$SLURM_API_CONFIG" "$JOBS" -via api
				stockade_run "$JOBS" -via api
			fi
		fi
		report
		;;
	slurm)
		install_slurm
		build_driver
		slurm_run "$2" "${3:-$JOBS}"
		;;
	stockade)
		build_driver
		copy_stockade
		stockade_run "${2:-$JOBS}"
		;;
	slurm-held)
		install_slurm
		build_driver
		slurm_run "$2" "${3:-$JOBS}" -hold
		;;
	stockade-held)
		build_driver
		copy_stockade
		stockade_run "${2:-$JOBS}" -hold
		;;
	slurm-api)
		install_slurm
		build_driver
		slurm_run "$2" "${3:-$JOBS}" -via api -hold
		;;
	slurm-api-run)
		install_slurm
		build_driver
		slurm_run "$2" "${3:-$JOBS}" -via api
		;;
	stockade-api)
		build_driver
		copy_stockade
		stockade_run "${2:-$JOBS}" -via api -hold
		;;
	stockade-api-run)
		build_driver
		copy_stockade
		stockade_run "${2:-$JOBS}" -via api
		;;
	report)
		build_driver
		report
		;;
	slurm-up)
		# Leaves Slurm running (for a look with squeue, sinfo...): `run.sh down`
		# stops it.
		install_slurm
		slurm_up "$2"
		slurmrestd_up
		trap - EXIT INT TERM
		echo "export SLURM_CONF=$SLURM_CONF"
		echo "# slurmrestd: curl --unix-socket $SLURMRESTD_SOCKET http://slurmrestd/slurm/v0.0.38/ping"
		;;
	stockade-up)
		copy_stockade
		stockade_up
		trap - EXIT INT TERM
		echo "export STOCKADE_SERVERS=$STOCKADE_SERVERS STOCKADE_CA=$STOCKADE_CA STOCKADE_CONFIG=/nonexistent STOCKADE_TOKEN=$BENCH_TOKEN"
		;;
	down) ;; # the trap stops everything
	*)
		echo "usage: $0 [all | slurm CONFIG [N] | stockade [N] | slurm-held CONFIG [N] | stockade-held [N] |" \
			"slurm-api CONFIG [N] | stockade-api [N] | slurm-api-run CONFIG [N] | stockade-api-run [N] |" \
			"report | slurm-up CONFIG | stockade-up | down]" >&2
		exit 2
		;;
	esac
}

main "$@"
