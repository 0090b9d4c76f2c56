#!/usr/bin/env bash
# `make bench`: durable ingest throughput and latency against nginx in the same run, plus memory
# and start-up figures, all on loopback. Writes bench/results/latest.md and prints it.
#
# Environment (all optional):
#   BENCH_DURATION   seconds per wrk run (10)          BENCH_WARMUP  seconds of warm-up (3)
#   BENCH_STARTS     start-to-ready samples (7)        BENCH_IDLE    idle connections (10000)
#   BENCH_TMPDIR     where the temp dir (journals) goes; default build/, on the repo's disk,
#                    because the fsync of the journal's disk is part of what is measured
#   FBR_BENCH_BIN    a prebuilt fhir-bulk-receiver (skips the build of the server)
#   BENCH_QUIET_WAIT seconds to wait at most for other work on the machine to calm down (60)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
STARTS=${BENCH_STARTS:-7}
IDLE=${BENCH_IDLE:-10000}
EVENT=$ROOT/tests/fixtures/events/complete.json
LUA=$ROOT/bench/post_event.lua
RESULTS=$ROOT/bench/results/latest.md
BUILD=$ROOT/build/release
BIN=${FBR_BENCH_BIN:-$BUILD/server/fhir-bulk-receiver}
TOOLS=$BUILD/bench
MIB=1048576

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- what the bench needs: nginx and wrk from Debian (the build's packages come from make deps) ---
install_bench_packages() {
  local missing=() p
  for p in nginx wrk curl sqlite3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}
install_bench_packages
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- build: the release preset, only the server and the bench tools ---
cmake --preset release >/dev/null
targets=(idle_connections start_to_ready fsync_latency)
[ -n "${FBR_BENCH_BIN:-}" ] || targets+=(fhir-bulk-receiver)
cmake --build --preset release -j "$(nproc)" --target "${targets[@]}" >/dev/null ||
  die "the release build failed (cmake --build --preset release)"
[ -x "$BIN" ] || die "no server binary at $BIN"

# --- everything started is tracked by pid and stopped on exit ---
WORK=$(mktemp -d "${BENCH_TMPDIR:-$ROOT/build}/bench.XXXXXX")
pids=()
stop_pid() { # stop_pid PID [SIGNAL]: signal it, wait for it, forget it
  local pid=$1 signal=${2:-TERM} kept=() p
  kill "-$signal" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 10,000 idle connections need more descriptors than the usual soft limit (server and client).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

wait_until_ready() { # wait_until_ready PORT PID: poll /readyz for up to 10 s
  local port=$1 pid=$2 i
  for ((i = 0; i < 1000; i++)); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && return 0
    kill -0 "$pid" 2>/dev/null || die "the server exited at start (see $WORK)"
    sleep 0.01
  done
  die "the server on port $port was not ready within 10 s"
}

TOKEN="bench-$RANDOM$RANDOM"
# write_config FILE PORT DATA_DIR LEVEL
write_config() {
  cat >"$1" <<EOF
{
  "listen": "127.0.0.1:$2",
  "path": "/webhook",
  "verification_tokens": ["$TOKEN"],
  "data_dir": "$3",
  "log": {"level": "$4", "format": "text"},
  "limits": {"max_connections": $((IDLE + 5000))},
  "handlers": []
}
EOF
}

RECEIVER_PID=""
RECEIVER_PORT=""
RECEIVER_DATA=""
# start_receiver NAME LEVEL [DATA_DIR]: a fresh receiver, its log in $WORK/NAME.log
start_receiver() {
  local name=$1 level=$2
  RECEIVER_DATA=${3:-$WORK/$name-data}
  RECEIVER_PORT=$(free_port)
  write_config "$WORK/$name.json" "$RECEIVER_PORT" "$RECEIVER_DATA" "$level"
  "$BIN" serve --config "$WORK/$name.json" >"$WORK/$name.log" 2>&1 &
  RECEIVER_PID=$!
  pids+=("$RECEIVER_PID")
  wait_until_ready "$RECEIVER_PORT" "$RECEIVER_PID"
}
stop_receiver() {
  stop_pid "$RECEIVER_PID" TERM
  RECEIVER_PID=""
}

status_kib() { # status_kib PID FIELD: a /proc/PID/status field in KiB
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

declare -A RESULT
RUN_BASE=$((RANDOM % 0x7fff))
RUN_INDEX=0
# wrk_run NAME URL CONNECTIONS SECONDS: RESULT[NAME] = the BENCH line of post_event.lua's done().
# Each run gets its own run ID (part of every Log ID), so no run repeats another's events.
wrk_run() {
  local name=$1 url=$2 connections=$3 seconds=$4 threads=2
  ((connections < threads)) && threads=$connections
  RUN_INDEX=$((RUN_INDEX + 1))
  wrk -t "$threads" -c "$connections" -d "${seconds}s" --timeout 5s -s "$LUA" "$url" \
    -- "$EVENT" "$TOKEN" "$(printf '%04x%04x' "$RUN_BASE" "$RUN_INDEX")" >"$WORK/wrk.out" ||
    die "wrk failed against $url: $(cat "$WORK/wrk.out")"
  RESULT[$name]=$(grep '^BENCH ' "$WORK/wrk.out") || die "no BENCH line from wrk: $(cat "$WORK/wrk.out")"
}
field() { # field "BENCH ..." KEY
  sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"
}
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
mib() { awk -v kib="$1" 'BEGIN { printf "%.1f MiB", kib / 1024 }'; }

BUSY_BEFORE=$(wait_until_quiet)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 0. the disk's floor: no durable 200 can come back faster than one fdatasync ---
log "disk floor: write + fdatasync in $WORK"
FS_TYPE=$(df --output=fstype "$WORK" | tail -1)
FSYNC=$("$TOOLS/fsync_latency" --dir "$WORK" --count 200)
FSYNC_APPEND_P50=$(sed -n 's/^append p50_us=\([0-9]*\).*/\1/p' <<<"$FSYNC")
FSYNC_APPEND_P99=$(sed -n 's/^append .*p99_us=\([0-9]*\).*/\1/p' <<<"$FSYNC")
FSYNC_REUSE_P50=$(sed -n 's/^overwrite p50_us=\([0-9]*\).*/\1/p' <<<"$FSYNC")
FSYNC_REUSE_P99=$(sed -n 's/^overwrite .*p99_us=\([0-9]*\).*/\1/p' <<<"$FSYNC")

# --- 1. throughput and latency: nginx and the receiver, alternating, 1 / 32 / 256 connections ---
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
sed -e "s|@PORT@|$NGINX_PORT|g" -e "s|@WORKERS@|$(nproc)|g" -e "s|@DIR@|$WORK/nginx|g" \
  bench/nginx.conf.in >"$WORK/nginx/nginx.conf"
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
pids+=("$NGINX_PID")
for ((i = 0; i < 500; i++)); do
  curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break
  kill -0 "$NGINX_PID" 2>/dev/null || die "nginx did not start: $(cat "$WORK/nginx/error.log")"
  sleep 0.01
done
NGINX_URL="http://127.0.0.1:$NGINX_PORT/webhook"

start_receiver receiver info
RECEIVER_URL="http://127.0.0.1:$RECEIVER_PORT/webhook"
MAIN_DATA=$RECEIVER_DATA
log "warm-up: ${WARMUP}s each at 32 connections"
wrk_run warmup_nginx "$NGINX_URL" 32 "$WARMUP"
wrk_run warmup_receiver "$RECEIVER_URL" 32 "$WARMUP"
RECEIVER_COUNTED=$(field "${RESULT[warmup_receiver]}" requests)
RECEIVER_STATUS_ERRORS=$(field "${RESULT[warmup_receiver]}" status_errors)

for c in 1 32 256; do
  log "nginx, $c connections, ${DURATION}s"
  wrk_run "nginx_$c" "$NGINX_URL" "$c" "$DURATION"
  log "receiver, $c connections, ${DURATION}s"
  wrk_run "receiver_$c" "$RECEIVER_URL" "$c" "$DURATION"
  RECEIVER_COUNTED=$((RECEIVER_COUNTED + $(field "${RESULT[receiver_$c]}" requests)))
  RECEIVER_STATUS_ERRORS=$((RECEIVER_STATUS_ERRORS + $(field "${RESULT[receiver_$c]}" status_errors)))
done
stop_receiver
# Every request must have been a new, journaled event: as many events as 200s counted (or more:
# wrk does not count the answers still in flight when a run ends), and no duplicate attempt.
JOURNAL_EVENTS=$(sqlite3 "$MAIN_DATA/journal.sqlite" "select count(*) from events")
JOURNAL_DUPLICATES=$(sqlite3 "$MAIN_DATA/journal.sqlite" \
  "select count(*) from attempts where duplicate = 1")
rm -rf "$MAIN_DATA"

# Logging's share: the same 32-connection run with log.level warn (no per-request lines).
start_receiver receiver-warn warn
RECEIVER_URL="http://127.0.0.1:$RECEIVER_PORT/webhook"
log "receiver (log.level warn), 32 connections, ${DURATION}s"
wrk_run warmup_warn "$RECEIVER_URL" 32 "$WARMUP"
wrk_run warn_32 "$RECEIVER_URL" 32 "$DURATION"
stop_receiver
rm -rf "$RECEIVER_DATA"

# The disk's share (diagnostic only, not a product setting): the journal on tmpfs, where fsync
# costs nothing, so what remains is the server's own CPU work sharing 2 cores with wrk.
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  SHM_DATA=$(mktemp -d /dev/shm/fbr-bench.XXXXXX)
  start_receiver receiver-tmpfs info "$SHM_DATA"
  RECEIVER_URL="http://127.0.0.1:$RECEIVER_PORT/webhook"
  log "receiver (journal on tmpfs: no fsync cost), 32 connections, ${DURATION}s"
  wrk_run warmup_tmpfs "$RECEIVER_URL" 32 "$WARMUP"
  wrk_run tmpfs_32 "$RECEIVER_URL" 32 "$DURATION"
  stop_receiver
  rm -rf "$SHM_DATA"
fi
stop_pid "$NGINX_PID" TERM

# --- 2. resident memory with 10,000 idle keep-alive connections ---
IDLE_RSS_KIB=""
IDLE_BASE_KIB=""
if ((FD_LIMIT >= IDLE + 100)); then
  start_receiver idle warn
  IDLE_BASE_KIB=$(status_kib "$RECEIVER_PID" VmRSS)
  log "$IDLE idle keep-alive connections"
  coproc IDLE_CLIENT { exec "$TOOLS/idle_connections" --port "$RECEIVER_PORT" --count "$IDLE" \
    --hold-seconds 60; }
  IDLE_CLIENT_PID=$IDLE_CLIENT_PID
  pids+=("$IDLE_CLIENT_PID")
  read -r -t 60 ready_line <&"${IDLE_CLIENT[0]}" || die "idle_connections did not get ready"
  [ "$ready_line" = "ready $IDLE" ] || die "idle_connections: $ready_line"
  sleep 0.5
  IDLE_RSS_KIB=$(status_kib "$RECEIVER_PID" VmRSS)
  stop_pid "$IDLE_CLIENT_PID" TERM
  stop_receiver
  rm -rf "$RECEIVER_DATA"
else
  log "skipping the idle connections: the descriptor limit is $FD_LIMIT"
fi

# --- 3. peak resident memory while receiving one ~40 MiB event ---
BIG=$WORK/big-event.json
BIG_TARGET=$((40 * MIB - 1024))
body=$(<"$EVENT")
marker='"request": "'
before=${body%%"$marker"*}
after=${body#*"$marker"}
pad=$((BIG_TARGET - ${#before} - ${#marker} - ${#after} - 1))
# The padding goes in front of the "request" string: still a valid event, just a long one.
{
  printf '%s%s' "$before" "$marker"
  head -c "$pad" /dev/zero | tr '\0' 'a'
  printf '%s\n' "$after"
} >"$BIG"
BIG_BYTES=$(stat -c %s "$BIG")
start_receiver big warn
BIG_BASE_KIB=$(status_kib "$RECEIVER_PID" VmHWM)
log "one $(mib $((BIG_BYTES / 1024))) event"
BIG_STATUS=$(curl -s -o "$WORK/big-answer.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  -H "verification-token: $TOKEN" --data-binary "@$BIG" "http://127.0.0.1:$RECEIVER_PORT/webhook")
[ "$BIG_STATUS" = 200 ] || die "the 40 MiB event got $BIG_STATUS: $(head -c 300 "$WORK/big-answer.json")"
BIG_HWM_KIB=$(status_kib "$RECEIVER_PID" VmHWM)
stop_receiver
rm -rf "$RECEIVER_DATA" "$BIG"

# --- 4. start to the first /readyz 200, fresh data dir each time ---
log "start to ready, $STARTS starts"
starts=()
for ((i = 0; i < STARTS; i++)); do
  port=$(free_port)
  write_config "$WORK/start.json" "$port" "$WORK/start-data-$i" warn
  # In the background and tracked, so an interrupted bench stops it (it stops its server).
  "$TOOLS/start_to_ready" --port "$port" -- "$BIN" serve --config "$WORK/start.json" \
    >"$WORK/start.out" &
  pid=$!
  pids+=("$pid")
  wait "$pid" || die "start_to_ready failed"
  stop_pid "$pid"
  starts+=("$(<"$WORK/start.out")")
done
START_MEDIAN=$(printf '%s\n' "${starts[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')

BUSY_AFTER=$(cpu_busy)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table ---
rps() { field "$1" rps; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
verdict() { # verdict OK? MARGIN-TEXT
  if [ "$1" = 1 ]; then echo "PASS ($2)"; else echo "MISS ($2)"; fi
}
row() { # row LABEL BENCH-LINE [RATIO]
  printf '| %s | %.0f | %s | %s | %s |\n' "$1" "$(rps "$2")" "$(ms "$(field "$2" p50_us)")" \
    "$(ms "$(field "$2" p99_us)")" "${3:-}"
}

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
if [ -n "$(git status --porcelain -- core config server 2>/dev/null)" ]; then
  DIRTY=" (plus uncommitted changes in core/ config/ server/)"
fi
[ -n "${FBR_BENCH_BIN:-}" ] && DIRTY="$DIRTY (server binary given: $FBR_BENCH_BIN)"

r32=$(rps "${RESULT[receiver_32]}")
n32=$(rps "${RESULT[nginx_32]}")
p99_32=$(field "${RESULT[receiver_32]}" p99_us)
t_throughput=$(awk -v r="$r32" -v n="$n32" 'BEGIN { print (r >= 0.5 * n) ? 1 : 0 }')
t_p99=$(awk -v p="$p99_32" 'BEGIN { print (p <= 5000) ? 1 : 0 }')
t_big=$(awk -v h="$BIG_HWM_KIB" -v b="$BIG_BYTES" 'BEGIN { print (h * 1024 <= 3 * b) ? 1 : 0 }')
t_start=$(awk -v s="$START_MEDIAN" 'BEGIN { print (s <= 200) ? 1 : 0 }')

mkdir -p "$(dirname "$RESULTS")"
{
  echo "# Benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · commit $COMMIT$DIRTY · $(nproc) cores" \
    "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)) · journal on $FS_TYPE" \
    "· $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2) · nginx $("$NGINX" -v 2>&1 | sed 's|.*/||')" \
    "· ${DURATION}s per run after a ${WARMUP}s warm-up"
  echo
  echo "Loopback; wrk, nginx and the receiver share the machine. Each receiver request is a new event"
  echo "(its own Log ID) journaled with an fsync'd group commit before its 200; nginx answers"
  echo "\`return 200\` with no work. Receiver: release build, log.level info, no handlers."
  echo "Latencies are wrk 4's distribution, which is corrected for coordinated omission (a stall adds"
  echo "the samples a steady client would have seen), so a pause of a few ms weighs heavily at 1"
  echo "connection, where requests are microseconds apart."
  echo
  echo "Other work on the machine: ${BUSY_BEFORE}% CPU busy just before the bench, ${BUSY_AFTER}% just"
  echo "after; load average $LOAD_BEFORE before, $LOAD_AFTER after."
  if ((BUSY_BEFORE > 10 || BUSY_AFTER > 10)); then
    echo "**The machine was busy with other work: the figures are lower and noisier than on a quiet machine.**"
  fi
  echo
  echo "| run | requests/s | p50 | p99 | receiver/nginx |"
  echo "|---|---:|---:|---:|---:|"
  for c in 1 32 256; do
    row "nginx \`return 200\`, $c connection$([ "$c" = 1 ] || echo s)" "${RESULT[nginx_$c]}"
    row "receiver, $c connection$([ "$c" = 1 ] || echo s)" "${RESULT[receiver_$c]}" \
      "$(ratio "$(rps "${RESULT[receiver_$c]}")" "$(rps "${RESULT[nginx_$c]}")")"
  done
  row "receiver, 32 connections, log.level warn" "${RESULT[warn_32]}" \
    "$(ratio "$(rps "${RESULT[warn_32]}")" "$n32")"
  if [ -n "${RESULT[tmpfs_32]:-}" ]; then
    row "diagnostic: receiver, 32 connections, journal on tmpfs (fsync free, not durable)" \
      "${RESULT[tmpfs_32]}" "$(ratio "$(rps "${RESULT[tmpfs_32]}")" "$n32")"
  fi
  echo
  echo "| measure | value |"
  echo "|---|---|"
  if [ -n "$IDLE_RSS_KIB" ]; then
    echo "| receiver RSS with $IDLE idle keep-alive connections | $(mib "$IDLE_RSS_KIB")" \
      "($(mib "$IDLE_BASE_KIB") before them: $(awk -v a="$IDLE_RSS_KIB" -v b="$IDLE_BASE_KIB" \
        -v n="$IDLE" 'BEGIN { printf "%.1f KiB", (a - b) / n }') per connection) |"
  else
    echo "| receiver RSS with $IDLE idle keep-alive connections | not measured: descriptor limit $FD_LIMIT |"
  fi
  echo "| receiver peak RSS (VmHWM) receiving one $(mib $((BIG_BYTES / 1024))) event |" \
    "$(mib "$BIG_HWM_KIB") = $(awk -v h="$BIG_HWM_KIB" -v b="$BIG_BYTES" \
      'BEGIN { printf "%.2f", h * 1024 / b }')× the body ($(mib "$BIG_BASE_KIB") before it) |"
  echo "| start to first \`/readyz\` 200 (median of $STARTS, fresh journal) | ${START_MEDIAN} ms" \
    "(all: ${starts[*]}) |"
  echo "| disk floor: write + fdatasync of 4 KiB, appending (new WAL) | p50 $(ms "$FSYNC_APPEND_P50")," \
    "p99 $(ms "$FSYNC_APPEND_P99") |"
  echo "| disk floor: write + fdatasync of 4 KiB, rewriting in place (reused WAL) |" \
    "p50 $(ms "$FSYNC_REUSE_P50"), p99 $(ms "$FSYNC_REUSE_P99") |"
  echo "| journal check (receiver runs) | $JOURNAL_EVENTS events journaled for $RECEIVER_COUNTED" \
    "200s counted by wrk; $JOURNAL_DUPLICATES duplicate attempts; $RECEIVER_STATUS_ERRORS non-2xx |"
  echo
  echo "## Targets"
  echo
  echo "- throughput at 32 connections ≥ 0.5× nginx: $(verdict "$t_throughput" \
    "$(ratio "$r32" "$n32") = $(printf '%.0f' "$r32")/s against $(printf '%.0f' "$n32")/s")"
  echo "- p99 at 32 connections ≤ 5 ms: $(verdict "$t_p99" "$(ms "$p99_32")")"
  if [ -n "$IDLE_RSS_KIB" ]; then
    t_idle=$(awk -v r="$IDLE_RSS_KIB" 'BEGIN { print (r <= 150 * 1024) ? 1 : 0 }')
    echo "- $IDLE idle connections ≤ 150 MiB RSS: $(verdict "$t_idle" \
      "$(mib "$IDLE_RSS_KIB"), $(awk -v r="$IDLE_RSS_KIB" 'BEGIN { printf "%.0f%%", r / 1024 / 150 * 100 }') of the budget")"
  else
    echo "- $IDLE idle connections ≤ 150 MiB RSS: not measured (descriptor limit $FD_LIMIT)"
  fi
  echo "- a 40 MiB body ≤ 3× its size in peak RSS: $(verdict "$t_big" \
    "$(awk -v h="$BIG_HWM_KIB" -v b="$BIG_BYTES" 'BEGIN { printf "%.2f×", h * 1024 / b }')")"
  echo "- start to ready ≤ 200 ms: $(verdict "$t_start" "${START_MEDIAN} ms")"
  echo
  if ((JOURNAL_DUPLICATES == 0 && RECEIVER_STATUS_ERRORS == 0 && JOURNAL_EVENTS >= RECEIVER_COUNTED)); then
    echo "Valid run: every receiver request was a new event, answered 200 and journaled."
  else
    echo "**Invalid run**: duplicates, non-2xx answers or missing events (see the journal check)."
  fi
} >"$RESULTS"
echo
cat "$RESULTS"
