#!/usr/bin/env bash
# `make bench-backends` (also run by `make bench`): durable ingest throughput and latency of the
# two journal backends in the same run, on loopback, with the same wrk load (bench/post_event.lua:
# every request a new event). Rows: SQLite on this disk; NATS JetStream on one node (replicas 1);
# NATS JetStream on a 3-node cluster with a replicated stream (replicas 3), all nats-server
# processes on this machine. Runs alternate between the backends. Writes
# bench/results/backends.md and prints it.
#
# Environment (all optional):
#   BENCH_DURATION  seconds per wrk run (10)     BENCH_WARMUP  seconds of warm-up (3)
#   BENCH_ROUNDS    alternating rounds (2)       FBR_BENCH_BIN a prebuilt fhir-bulk-receiver
#   BENCH_TMPDIR    where the temp dir (journal, JetStream stores) goes; default build/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
ROUNDS=${BENCH_ROUNDS:-2}
EVENT=$ROOT/tests/fixtures/events/complete.json
LUA=$ROOT/bench/post_event.lua
RESULTS=$ROOT/bench/results/backends.md
BIN=${FBR_BENCH_BIN:-$ROOT/build/release/server/fhir-bulk-receiver}

log() { printf 'bench-backends: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
install_bench_packages

command -v nats-server >/dev/null || die "nats-server is missing (make deps installs it)"
if [ -z "${FBR_BENCH_BIN:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$(nproc)" --target fhir-bulk-receiver >/dev/null ||
    die "the release build failed (cmake --build --preset release)"
fi
[ -x "$BIN" ] || die "no server binary at $BIN"

WORK=$(mktemp -d "${BENCH_TMPDIR:-$ROOT/build}/bench-backends.XXXXXX")
pids=()
stop_pid() {
  local pid=$1 kept=() p
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${BENCH_KEEP:-}" ] && log "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- NATS: one single node, one 3-node cluster (JetStream, stores under $WORK) ---
# start_nats NAME CLIENT_PORT MONITOR_PORT [CLUSTER_PORT ROUTES]
start_nats() {
  local name=$1 port=$2 monitor=$3 cluster=${4:-} routes=${5:-}
  mkdir -p "$WORK/$name"
  {
    echo "server_name: $name"
    echo "listen: 127.0.0.1:$port"
    echo "http: 127.0.0.1:$monitor"
    echo "jetstream { store_dir: \"$WORK/$name/store\" }"
    if [ -n "$cluster" ]; then
      echo "cluster { name: bench, listen: 127.0.0.1:$cluster, routes: [ $routes ] }"
    fi
  } >"$WORK/$name/nats.conf"
  nats-server -c "$WORK/$name/nats.conf" >"$WORK/$name/nats.log" 2>&1 &
  pids+=($!)
}
wait_nats() { # wait_nats MONITOR_PORT...
  local port i
  for port in "$@"; do
    for ((i = 0; i < 1000; i++)); do
      curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
      sleep 0.02
    done
    curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" || die "nats-server (monitor $port) not healthy"
  done
}
jetstream_messages() { # jetstream_messages MONITOR_PORT: messages in every stream of the server
  curl -sf "http://127.0.0.1:$1/jsz" | tr -d ' \n' | sed -n 's/.*"messages":\([0-9]*\).*/\1/p'
}

SINGLE_PORT=$(free_port)
SINGLE_MONITOR=$(free_port)
start_nats single "$SINGLE_PORT" "$SINGLE_MONITOR"
declare -a CPORT MPORT RPORT
for i in 0 1 2; do
  CPORT[i]=$(free_port)
  MPORT[i]=$(free_port)
  RPORT[i]=$(free_port)
done
for i in 0 1 2; do
  routes=""
  for j in 0 1 2; do
    ((j == i)) || routes="$routes${routes:+, }nats-route://127.0.0.1:${RPORT[j]}"
  done
  start_nats "node$i" "${CPORT[i]}" "${MPORT[i]}" "${RPORT[i]}" "$routes"
done
wait_nats "$SINGLE_MONITOR" "${MPORT[0]}" "${MPORT[1]}" "${MPORT[2]}"

# --- receivers: one per backend, all running for the whole bench ---
TOKEN="bench-$RANDOM$RANDOM"
declare -A URL PID
# start_receiver NAME JOURNAL_JSON
start_receiver() {
  local name=$1 journal=$2 port i
  port=$(free_port)
  cat >"$WORK/$name.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "verification_tokens": ["$TOKEN"],
  "data_dir": "$WORK/$name-data",
  "log": {"level": "info", "format": "text"},
  "journal": $journal,
  "handlers": []
}
EOF
  "$BIN" serve --config "$WORK/$name.json" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  pids+=("${PID[$name]}")
  for ((i = 0; i < 1500; i++)); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
    kill -0 "${PID[$name]}" 2>/dev/null || die "receiver $name exited: $(tail -5 "$WORK/$name.log")"
    sleep 0.02
  done
  curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" ||
    die "receiver $name not ready: $(tail -5 "$WORK/$name.log")"
  URL[$name]="http://127.0.0.1:$port/webhook"
}
start_receiver sqlite '{"backend": "sqlite"}'
start_receiver nats_r1 '{"backend": "nats", "nats": {"servers": ["nats://127.0.0.1:'"$SINGLE_PORT"'"], "stream": "BENCH_R1", "subject": "bench.r1", "replicas": 1}}'
start_receiver nats_r3 '{"backend": "nats", "nats": {"servers": ["nats://127.0.0.1:'"${CPORT[0]}"'", "nats://127.0.0.1:'"${CPORT[1]}"'", "nats://127.0.0.1:'"${CPORT[2]}"'"], "stream": "BENCH_R3", "subject": "bench.r3", "replicas": 3}}'

# --- load: wrk, alternating backends, 1 and 32 connections ---
RUN_BASE=$((RANDOM % 0x7fff))
RUN_INDEX=0
declare -A REQUESTS ERRORS RPS_SUM P50_MAX P99_MAX N
wrk_run() { # wrk_run NAME URL CONNECTIONS SECONDS RUN_INDEX -> the BENCH line on stdout
  local threads=2
  (($3 < threads)) && threads=$3
  wrk -t "$threads" -c "$3" -d "$4s" --timeout 5s -s "$LUA" "$2" \
    -- "$EVENT" "$TOKEN" "$(printf '%04x%04x' "$RUN_BASE" "$5")" >"$WORK/wrk.out" ||
    die "wrk failed against $1: $(cat "$WORK/wrk.out")"
  grep '^BENCH ' "$WORK/wrk.out" || die "no BENCH line from wrk: $(cat "$WORK/wrk.out")"
}
field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
BACKENDS=(sqlite nats_r1 nats_r3)
for b in "${BACKENDS[@]}"; do
  log "warm-up $b: ${WARMUP}s at 32 connections"
  RUN_INDEX=$((RUN_INDEX + 1)) # each run its own run ID, so no run repeats another's Log IDs
  line=$(wrk_run "$b" "${URL[$b]}" 32 "$WARMUP" "$RUN_INDEX")
  REQUESTS[$b]=$(field "$line" requests)
  ERRORS[$b]=$(field "$line" status_errors)
done
for ((round = 1; round <= ROUNDS; round++)); do
  for c in 1 32; do
    for b in "${BACKENDS[@]}"; do
      log "round $round: $b, $c connections, ${DURATION}s"
      RUN_INDEX=$((RUN_INDEX + 1))
      line=$(wrk_run "$b" "${URL[$b]}" "$c" "$DURATION" "$RUN_INDEX")
      key="${b}_$c"
      REQUESTS[$b]=$((REQUESTS[$b] + $(field "$line" requests)))
      ERRORS[$b]=$((ERRORS[$b] + $(field "$line" status_errors)))
      RPS_SUM[$key]=$(awk -v a="${RPS_SUM[$key]:-0}" -v b="$(field "$line" rps)" 'BEGIN { print a + b }')
      N[$key]=$((${N[$key]:-0} + 1))
      for q in p50 p99; do
        v=$(field "$line" "${q}_us")
        if [ "$q" = p50 ]; then
          ((v > ${P50_MAX[$key]:-0})) && P50_MAX[$key]=$v
        else
          ((v > ${P99_MAX[$key]:-0})) && P99_MAX[$key]=$v
        fi
      done
    done
  done
done

# --- every 200 is a stored event: count them where each backend keeps them ---
for b in "${BACKENDS[@]}"; do stop_pid "${PID[$b]}"; done
STORED[0]=$(sqlite3 "$WORK/sqlite-data/journal.sqlite" "select count(*) from events" 2>/dev/null || echo "?")
STORED[1]=$(jetstream_messages "$SINGLE_MONITOR")
STORED[2]=$(jetstream_messages "${MPORT[0]}")

ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
avg() { awk -v s="${RPS_SUM[$1]}" -v n="${N[$1]}" 'BEGIN { printf "%.0f", s / n }'; }
{
  echo "# Journal backends: durable ingest, same run"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores,"
  echo "nats-server $(nats-server --version | sed 's/^nats-server: v//'), wrk POSTing tests/fixtures/events/complete.json"
  echo "with a new Log ID per request (bench/post_event.lua); ${ROUNDS} alternating rounds of ${DURATION}s"
  echo "per backend and connection count: req/s is the mean over rounds, latency the worst round."
  echo "All servers share this machine's cores with wrk; the 3-node cluster runs three nats-server"
  echo "processes here, so it measures replication's protocol cost, not a network's."
  echo
  echo "| backend | connections | req/s | p50 | p99 |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for c in 1 32; do
    for b in "${BACKENDS[@]}"; do
      k="${b}_$c"
      printf '| %s | %d | %s | %s | %s |\n' "$b" "$c" "$(avg "$k")" "$(ms "${P50_MAX[$k]}")" "$(ms "${P99_MAX[$k]}")"
    done
  done
  echo
  echo "sqlite: journal.sqlite (WAL, synchronous=FULL, group commit) on $(df --output=fstype "$WORK" | tail -1)."
  echo "nats_r1: one nats-server, stream replicas 1. nats_r3: 3-node cluster, stream replicas 3."
  echo "JetStream acknowledges a publish once the stream leader (and, with replicas 3, a quorum) has"
  echo "written it; nats-server's default sync_interval (2 min) means a single node relies on the page"
  echo "cache for power loss, a replicated stream on the other nodes (README: Scale-out)."
  echo
  echo "Check: 200s counted by wrk vs events stored (stored may exceed counted by the answers in flight"
  echo "when a run ends; status errors must be 0):"
  echo
  i=0
  for b in "${BACKENDS[@]}"; do
    echo "- $b: ${REQUESTS[$b]} counted, ${STORED[$i]} stored, ${ERRORS[$b]} status errors"
    i=$((i + 1))
  done
} >"$RESULTS"
cat "$RESULTS"
