#!/usr/bin/env bash
# `make bench`: durable ingest throughput and latency against its peers in the same run (nginx
# `return 200`, a plain Node.js receiver, a Node.js receiver with an fdatasync per request,
# adnanh/webhook: bench/peers.sh), each alone, alternating, BENCH_ROUNDS rounds, medians; the
# disk's fdatasync floor between the 1-connection rounds; plus memory and start-up figures, all on
# loopback. Writes bench/results/latest.md with PASS/MISS per target of issue 17 and prints it.
# About 4 to 5 minutes with the defaults (more when the disk is slow: the floor takes 2,000
# fsyncs a round).
#
# Environment (all optional):
#   BENCH_DURATION   seconds per wrk run (5)           BENCH_WARMUP  seconds of warm-up per peer (3)
#   BENCH_ROUNDS     rounds per peer (3)               BENCH_FLOOR_BYTES  the floor's write (1200)
#   BENCH_STARTS     start-to-ready samples (7)        BENCH_IDLE    idle connections (10000)
#   BENCH_TMPDIR     where the temp dir (journals) goes; default build/, on the repo's disk,
#                    because the fsync of the journal's disk is part of what is measured
#   FBR_BENCH_BIN    a prebuilt fhir-bulk-receiver (skips the build of the server)
#   BENCH_QUIET_WAIT seconds to wait at most for other work on the machine to calm down (60)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-3}
ROUNDS=${BENCH_ROUNDS:-3}
FLOOR_BYTES=${BENCH_FLOOR_BYTES:-1200}
FLOOR_COUNT=1000
STARTS=${BENCH_STARTS:-7}
IDLE=${BENCH_IDLE:-10000}
EVENT=$ROOT/tests/fixtures/events/complete.json
LUA=$ROOT/bench/post_event.lua
RESULTS=$ROOT/bench/results/latest.md
BUILD=$ROOT/build/release
BIN=${FBR_BENCH_BIN:-$BUILD/server/fhir-bulk-receiver}
TOOLS=$BUILD/bench
MIB=1048576
HZ=$(getconf CLK_TCK)

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- what the bench needs: nginx, wrk and the peers from Debian (the build's come from make deps) ---
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
install_bench_packages
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
NODE=$(command -v node || command -v nodejs)
WEBHOOK=$(command -v webhook || echo /usr/bin/webhook)

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

# shellcheck source=bench/peers.sh
source "$ROOT/bench/peers.sh"

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

# --- 1. throughput and latency: the peers and the receiver, each alone, alternating (peers.sh) ---
start_peers
MAIN_DATA=${PEER_DATA[receiver]}
run_peer_rounds
stop_peers
# Every request must have been a new, journaled event: as many events as 200s counted (or more:
# wrk does not count the answers still in flight when a run ends), and no duplicate attempt.
JOURNAL_EVENTS=$(journal_events "$MAIN_DATA")
JOURNAL_DUPLICATES=$(sqlite3 "$MAIN_DATA/journal.sqlite" \
  "select count(*) from attempts where duplicate = 1")
rm -rf "$MAIN_DATA"

# Logging's share: the same 32-connection run with log.level warn (no per-request lines).
start_diagnostic receiver-warn warn
log "receiver (log.level warn), 32 connections, ${DURATION}s"
measure warmup_warn receiver-warn 32 "$WARMUP"
measure warn_32 receiver-warn 32 "$DURATION"
stop_receiver
rm -rf "$RECEIVER_DATA"

# The disk's share (diagnostic only, not a product setting): the journal on tmpfs, where fsync
# costs nothing, so what remains is the server's own CPU work sharing 2 cores with wrk.
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  SHM_DATA=$(mktemp -d /dev/shm/fbr-bench.XXXXXX)
  start_diagnostic receiver-tmpfs info "$SHM_DATA"
  log "receiver (journal on tmpfs: no fsync cost), 32 connections, ${DURATION}s"
  measure warmup_tmpfs receiver-tmpfs 32 "$WARMUP"
  measure tmpfs_32 receiver-tmpfs 32 "$DURATION"
  stop_receiver
  rm -rf "$SHM_DATA"
fi

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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
ms3() { awk -v us="$1" 'BEGIN { printf "%.3f ms", us / 1000 }'; }
lat() { # a latency in µs, in ms: 3 decimals under 1 ms, 2 above
  awk -v us="$1" 'BEGIN { printf (us < 1000 ? "%.3f ms" : "%.2f ms"), us / 1000 }'
}
verdict() { # verdict OK? MARGIN-TEXT
  if [ "$1" = 1 ]; then echo "PASS ($2)"; else echo "MISS ($2)"; fi
}
cpu_text() { # cpu_text "USER SYSTEM TOTAL"
  awk -v c="$1" 'BEGIN { split(c, v, " "); printf "%.1f µs (%.1f + %.1f)", v[3], v[1], v[2] }'
}
joined() { paste -sd' ' -; } # the lines of stdin on one line
kilo() { awk '{ printf "%.1fk\n", $1 / 1000 }'; }
# peer_row LABEL RUN [RATIO]: the medians over the rounds of RUN (RESULT[RUN_1] ...)
peer_row() {
  printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "$1" "$(med "$2" rps)" "$(lat "$(med "$2" p50_us)")" \
    "$(lat "$(med "$2" p99_us)")" "$(cpu_text "$(med_cpu "$2")")" "${3:-}" \
    "$(rounds_of "$2" rps | kilo | joined)"
}
# single_row LABEL RUN [RATIO]: one run (no rounds)
single_row() {
  printf '| %s | %.0f | %s | %s | %s | %s | one run |\n' "$1" "$(field "${RESULT[$2]}" rps)" \
    "$(lat "$(field "${RESULT[$2]}" p50_us)")" "$(lat "$(field "${RESULT[$2]}" p99_us)")" \
    "$(cpu_text "${CPU_USER[$2]} ${CPU_SYS[$2]} $(awk -v u="${CPU_USER[$2]}" -v s="${CPU_SYS[$2]}" \
      'BEGIN { print u + s }')")" "${3:-}"
}
round_ratios() { # round_ratios RUN KEY FLOOR-KIND: each round's RUN KEY over its floor, on one line
  local r
  for ((r = 1; r <= ROUNDS; r++)); do
    ratio "$(field "${RESULT[${1}_$r]}" "$2")" "${FLOOR[${3}_$r]}"
    echo
  done | joined
}
floor_rounds() { # floor_rounds KIND: FLOOR[KIND_1] .. in ms, on one line
  local r
  for ((r = 1; r <= ROUNDS; r++)); do awk -v us="${FLOOR[${1}_$r]}" 'BEGIN { printf "%.3f\n", us / 1000 }'; done | joined
}

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
if [ -n "$(git status --porcelain -- core config server 2>/dev/null)" ]; then
  DIRTY=" (plus uncommitted changes in core/ config/ server/)"
fi
[ -n "${FBR_BENCH_BIN:-}" ] && DIRTY="$DIRTY (server binary given: $FBR_BENCH_BIN)"

r32=$(med receiver_32 rps)
n32=$(med nginx_32 rps)
node32=$(med node_32 rps)
p99_32=$(med receiver_32 p99_us)
read -r cpu_user cpu_sys cpu_total <<<"$(med_cpu receiver_32)"
r1_p50=$(med receiver_1 p50_us)
r1_p99=$(med receiver_1 p99_us)
n1_p50=$(med nginx_1 p50_us)
floor_p50=$(med_floor rewrite_p50)
floor_p99=$(med_floor rewrite_p99)
r256_p99=$(med receiver_256 p99_us)
r256_errors=$(errors_total receiver_256)
t_node=$(awk -v r="$r32" -v n="$node32" 'BEGIN { print (r >= 1.5 * n) ? 1 : 0 }')
t_throughput=$(awk -v r="$r32" -v n="$n32" 'BEGIN { print (r >= 0.5 * n) ? 1 : 0 }')
t_p99=$(awk -v p="$p99_32" 'BEGIN { print (p <= 5000) ? 1 : 0 }')
t_cpu=$(awk -v c="$cpu_total" 'BEGIN { print (c <= 25) ? 1 : 0 }')
t_floor_p50=$(awk -v r="$r1_p50" -v f="$floor_p50" 'BEGIN { print (r <= 1.6 * f) ? 1 : 0 }')
t_floor_p99=$(awk -v r="$r1_p99" -v f="$floor_p99" 'BEGIN { print (r <= 3 * f) ? 1 : 0 }')
t_256=$(awk -v p="$r256_p99" -v e="$r256_errors" 'BEGIN { print (e == 0 && p <= 20000) ? 1 : 0 }')
t_journal=0
if ((JOURNAL_DUPLICATES == 0 && RECEIVER_STATUS_ERRORS == 0 && JOURNAL_EVENTS >= RECEIVER_COUNTED)); then
  t_journal=1
fi
t_big=$(awk -v h="$BIG_HWM_KIB" -v b="$BIG_BYTES" 'BEGIN { print (h * 1024 <= 3 * b) ? 1 : 0 }')
t_start=$(awk -v s="$START_MEDIAN" 'BEGIN { print (s <= 200) ? 1 : 0 }')
WEBHOOK_VERSION=$("$WEBHOOK" -version 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p')

mkdir -p "$(dirname "$RESULTS")"
{
  echo "# Benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · commit $COMMIT$DIRTY · $(nproc) cores" \
    "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)) · journal on $FS_TYPE" \
    "· $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2) · nginx $("$NGINX" -v 2>&1 | sed 's|.*/||')" \
    "· node $("$NODE" --version) · webhook $WEBHOOK_VERSION" \
    "· rounds: $ROUNDS of ${DURATION}s per peer after a ${WARMUP}s warm-up each"
  echo
  echo "Loopback; wrk and the peer under load share the machine, one peer at a time (the others idle),"
  echo "the peers in turn within a round, the order turned by one each round; the figures are the"
  echo "medians of the rounds (each round's requests/s in the last column). Every peer gets the same"
  echo "load: wrk POSTing the seed event with a new Log ID per request. The receiver journals each one"
  echo "with an fsync'd group commit before its 200 (release build, log.level info, no handlers); nginx"
  echo "answers \`return 200\` with no work; \`bench/peers/node_receiver.js\` reads the body and answers;"
  echo "\`node_fsync_receiver.js\` also appends it to a file and fdatasyncs it (async, libuv's pool);"
  echo "webhook runs \`/bin/true\` per request and answers once it has run. CPU per request: the peer's"
  echo "user + system time (its threads and children, /proc/PID/stat) over the run, divided by the"
  echo "events journaled (the receiver) or the requests answered (the others)."
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
  echo "| 32 connections | requests/s | p50 | p99 | CPU per request (user + system) | receiver/peer | rounds |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  peer_row "nginx \`return 200\` (no work: the ceiling)" nginx_32 "$(ratio "$r32" "$n32")"
  peer_row "plain Node.js receiver, no fsync" node_32 "$(ratio "$r32" "$node32")"
  peer_row "Node.js receiver, append + fdatasync per request" node_fsync_32 \
    "$(ratio "$r32" "$(med node_fsync_32 rps)")"
  peer_row "adnanh/webhook $WEBHOOK_VERSION, \`/bin/true\` per request" webhook_32 \
    "$(ratio "$r32" "$(med webhook_32 rps)")"
  peer_row "**fhir-bulk-receiver** (durable), log.level info" receiver_32
  single_row "receiver, log.level warn" warn_32 "$(ratio "$(field "${RESULT[warn_32]}" rps)" "$r32")"
  if [ -n "${RESULT[tmpfs_32]:-}" ]; then
    single_row "diagnostic: receiver, journal on tmpfs (fsync free, not durable)" tmpfs_32 \
      "$(ratio "$(field "${RESULT[tmpfs_32]}" rps)" "$r32")"
  fi
  echo
  echo "The last two rows: the log.level warn and tmpfs receivers against the receiver above."
  echo
  echo "| 1 connection | requests/s | p50 | p99 | CPU per request (user + system) | | rounds |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  peer_row "nginx \`return 200\` (the loopback round trip)" nginx_1
  peer_row "**fhir-bulk-receiver** (durable), log.level info" receiver_1
  echo "| disk floor: write + fdatasync of $FLOOR_BYTES B, rewriting in place, before each receiver round" \
    "| | $(ms3 "$floor_p50") | $(ms3 "$floor_p99") | | | p50 $(floor_rounds rewrite_p50) ms |"
  echo "| disk floor: the same, appending | | $(ms3 "$(med_floor append_p50)")" \
    "| $(ms3 "$(med_floor append_p99)") | | | p50 $(floor_rounds append_p50) ms |"
  echo
  echo "| 256 connections | requests/s | p50 | p99 | CPU per request (user + system) | errors (all rounds) | rounds |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  peer_row "nginx \`return 200\`" nginx_256 "$(errors_total nginx_256)"
  peer_row "**fhir-bulk-receiver** (durable), log.level info" receiver_256 "$r256_errors"
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
  echo "| disk floor at the start: write + fdatasync of 4 KiB, appending (new WAL) |" \
    "p50 $(ms3 "$FSYNC_APPEND_P50"), p99 $(ms3 "$FSYNC_APPEND_P99") |"
  echo "| disk floor at the start: write + fdatasync of 4 KiB, rewriting in place (reused WAL) |" \
    "p50 $(ms3 "$FSYNC_REUSE_P50"), p99 $(ms3 "$FSYNC_REUSE_P99") |"
  echo "| journal check (all the log.level info receiver's runs) | $JOURNAL_EVENTS events journaled for" \
    "$RECEIVER_COUNTED 200s counted by wrk; $JOURNAL_DUPLICATES duplicate attempts;" \
    "$RECEIVER_STATUS_ERRORS non-2xx |"
  echo
  echo "## Targets"
  echo
  echo "Issue 17's, from the medians above."
  echo
  echo "- 32 connections, throughput ≥ 1.5× the plain Node.js receiver: $(verdict "$t_node" \
    "$(ratio "$r32" "$node32") = $(printf '%.0f' "$r32")/s against $(printf '%.0f' "$node32")/s")"
  echo "- 32 connections, throughput ≥ 0.5× nginx: $(verdict "$t_throughput" \
    "$(ratio "$r32" "$n32") = $(printf '%.0f' "$r32")/s against $(printf '%.0f' "$n32")/s")"
  echo "- 32 connections, p99 ≤ 5 ms: $(verdict "$t_p99" "$(ms "$p99_32")")"
  echo "- 32 connections, server CPU per durable event ≤ 25 µs at log.level info: $(verdict "$t_cpu" \
    "$cpu_total µs: user $cpu_user, system $cpu_sys; nginx $(med_cpu nginx_32 | awk '{ print $3 }') µs per request")"
  text="$(ratio "$r1_p50" "$floor_p50") = $(ms3 "$r1_p50") against $(ms3 "$floor_p50")"
  text+="; nginx's p50 at 1 connection, the loopback round trip: $(ms3 "$n1_p50")"
  text+="; per round: $(round_ratios receiver_1 p50_us rewrite_p50)"
  echo "- 1 connection, p50 ≤ 1.6× the disk's floor p50 (rewrite in place, $FLOOR_BYTES B):" \
    "$(verdict "$t_floor_p50" "$text")"
  text="$(ratio "$r1_p99" "$floor_p99") = $(ms3 "$r1_p99") against $(ms3 "$floor_p99")"
  text+="; per round: $(round_ratios receiver_1 p99_us rewrite_p99)"
  echo "- 1 connection, p99 ≤ 3× the disk's floor p99: $(verdict "$t_floor_p99" "$text")"
  echo "- 256 connections, no error and p99 ≤ 20 ms: $(verdict "$t_256" \
    "$r256_errors errors (rounds: $ROUNDS), p99 $(ms "$r256_p99")")"
  text="$JOURNAL_EVENTS events for $RECEIVER_COUNTED 200s, $JOURNAL_DUPLICATES duplicates"
  text+=", $RECEIVER_STATUS_ERRORS non-2xx"
  echo "- every 200 counted by wrk is in the journal, no duplicate, no non-2xx:" \
    "$(verdict "$t_journal" "$text")"
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
  if ((t_journal)); then
    echo "Valid run: every receiver request was a new event, answered 200 and journaled."
  else
    echo "**Invalid run**: duplicates, non-2xx answers or missing events (see the journal check)."
  fi
} >"$RESULTS"
echo
cat "$RESULTS"
