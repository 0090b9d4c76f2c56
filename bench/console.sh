#!/usr/bin/env bash
# `make bench` (after bench/run.sh and bench/backends.sh): the event console's costs, on loopback.
#   a) the JSON API over a SQLite journal of 1,000,000 events (bench/console_journal.sh):
#      GET /api/events?limit=100 and GET /api/events/{key} of an event in the middle, median and
#      p95 over BENCH_SAMPLES requests each on one keep-alive connection (target < 50 ms each);
#   b) resident memory (VmRSS) added by 100 open /api/stream streams (target < 16 MiB);
#   c) ingest with the admin listener on and SSE streams consuming every event, against a
#      receiver without one: bench/run.sh's wrk load (a new Log ID per request) at 32
#      connections, alternating between the two, BENCH_ROUNDS rounds; medians (target: within 5 %).
# Writes bench/results/console.md, prints it, and exits 1 when a target is missed.
#
# Environment (all optional):
#   BENCH_EVENTS    events in the journal (1000000)   BENCH_SAMPLES  requests per API figure (25)
#   BENCH_STREAMS   streams for the memory figure (100)
#   BENCH_DURATION  seconds per wrk run (10)          BENCH_WARMUP   seconds of warm-up (3)
#   BENCH_ROUNDS    alternating ingest rounds (5)  BENCH_CONSUMERS streams open during them (4)
#   BENCH_TMPDIR    where the temp dir (journals) goes; default build/
#   BENCH_QUIET_WAIT seconds to wait at most for other work on the machine to calm down (60)
#   FBR_BENCH_BIN   a prebuilt fhir-bulk-receiver (its build's bench/ holds the tools)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

EVENTS=${BENCH_EVENTS:-1000000}
SAMPLES=${BENCH_SAMPLES:-25}
STREAMS=${BENCH_STREAMS:-100}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
ROUNDS=${BENCH_ROUNDS:-5}
EVENT=$ROOT/tests/fixtures/events/complete.json
LUA=$ROOT/bench/post_event.lua
RESULTS=$ROOT/bench/results/console.md
BIN=${FBR_BENCH_BIN:-$ROOT/build/release/server/fhir-bulk-receiver}
TOOLS=$(dirname "$(dirname "$BIN")")/bench
CONSUMERS=${BENCH_CONSUMERS:-4} # streams reading every event during the ingest runs

log() { printf 'bench-console: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
install_bench_packages

if [ -z "${FBR_BENCH_BIN:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$(nproc)" --target fhir-bulk-receiver sse_clients >/dev/null ||
    die "the release build failed (cmake --build --preset release)"
else
  [ -x "$TOOLS/sse_clients" ] || die "no $TOOLS/sse_clients beside the given binary (build target sse_clients)"
fi
[ -x "$BIN" ] || die "no server binary at $BIN"

# --- everything started is tracked by pid and stopped on exit ---
WORK=$(mktemp -d "${BENCH_TMPDIR:-$ROOT/build}/bench-console.XXXXXX")
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

BUSY_BEFORE=$(wait_until_quiet)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

TOKEN="bench-$RANDOM$RANDOM"
declare -A WEBHOOK ADMIN PID
# start_receiver NAME DATA_DIR ADMIN(on|off): its webhook and admin ports, once /readyz answers
# (a journal of a million events may take a while: the server adds its missing indexes at open).
start_receiver() {
  local name=$1 data=$2 admin=$3 port i line
  port=$(free_port)
  {
    echo "{"
    echo "  \"listen\": \"127.0.0.1:$port\","
    echo "  \"path\": \"/webhook\","
    echo "  \"verification_tokens\": [\"$TOKEN\"],"
    echo "  \"data_dir\": \"$data\","
    echo "  \"log\": {\"level\": \"info\", \"format\": \"text\"},"
    [ "$admin" = on ] && echo "  \"admin\": {\"listen\": \"127.0.0.1:0\"},"
    echo "  \"handlers\": []"
    echo "}"
  } >"$WORK/$name.json"
  "$BIN" serve --config "$WORK/$name.json" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  pids+=("${PID[$name]}")
  for ((i = 0; i < 6000; i++)); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
    kill -0 "${PID[$name]}" 2>/dev/null || die "receiver $name exited: $(tail -5 "$WORK/$name.log")"
    sleep 0.02
  done
  curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" ||
    die "receiver $name not ready within 120 s: $(tail -5 "$WORK/$name.log")"
  WEBHOOK[$name]="http://127.0.0.1:$port/webhook"
  ADMIN[$name]=""
  if [ "$admin" = on ]; then
    # admin.listen port 0: the bound port is in the listening line (admin=127.0.0.1:PORT).
    line=$(grep -m1 ' listening ' "$WORK/$name.log" || true)
    [[ $line =~ admin=127\.0\.0\.1:([0-9]+) ]] ||
      die "receiver $name logged no admin port: $(tail -3 "$WORK/$name.log")"
    ADMIN[$name]="http://127.0.0.1:${BASH_REMATCH[1]}"
  fi
}

# percentile P < FILE: nearest rank over the numbers in FILE, one a line.
percentile() { sort -g "$2" | awk -v p="$1" '{ v[NR] = $1 } END { r = int((p * NR + 99) / 100); print v[r < 1 ? 1 : r] }'; }

# time_requests NAME URL N: N GETs on one keep-alive connection (after one not counted); the
# times in ms go to $WORK/NAME.ms, the first answer to $WORK/NAME.body. Every answer must be 200.
time_requests() {
  local name=$1 url=$2 n=$3 args=() i
  for ((i = 0; i <= n; i++)); do args+=(-o "$WORK/$name.out.$i" "$url"); done
  curl -s --max-time 120 -w '%{http_code} %{time_total}\n' "${args[@]}" >"$WORK/$name.times" ||
    die "curl failed on $url"
  if grep -qv '^200 ' "$WORK/$name.times"; then
    die "$url answered $(grep -v '^200 ' "$WORK/$name.times" | head -1 | cut -d' ' -f1):" \
      "$(head -c 300 "$WORK/$name.out.0")"
  fi
  mv "$WORK/$name.out.1" "$WORK/$name.body"
  rm -f "$WORK/$name.out."*
  tail -n +2 "$WORK/$name.times" | awk '{ printf "%.2f\n", $2 * 1000 }' >"$WORK/$name.ms"
}

# --- a) the API over a journal of $EVENTS events ---
log "a journal of $EVENTS events"
made_at=$(date +%s.%N)
"$ROOT/bench/console_journal.sh" "$WORK/big-data" "$EVENTS"
MADE_S=$(awk -v a="$made_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
JOURNAL_MIB=$(du -m "$WORK/big-data/journal.sqlite" | cut -f1)
opened_at=$(date +%s.%N)
start_receiver big "$WORK/big-data" on
OPEN_S=$(awk -v a="$opened_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
API=${ADMIN[big]}
MIDDLE_KEY=$("$ROOT/bench/console_journal.sh" --key-of $((EVENTS / 2 + 1)))
log "GET /api/events?limit=100, $SAMPLES times"
time_requests list "$API/api/events?limit=100" "$SAMPLES"
LISTED=$(grep -o '"key":"' "$WORK/list.body" | wc -l)
((LISTED == 100)) || die "/api/events?limit=100 listed $LISTED events: $(head -c 300 "$WORK/list.body")"
log "GET /api/events/$MIDDLE_KEY, $SAMPLES times"
time_requests event "$API/api/events/$MIDDLE_KEY" "$SAMPLES"
grep -q "\"$MIDDLE_KEY\"" "$WORK/event.body" || die "the event's page does not name it: $(head -c 300 "$WORK/event.body")"
# Informational: a filter that scans (one event in 100 has a dead delivery), and a search.
log "GET /api/events?limit=100&state=dead and ?q=<attempt ID>, $SAMPLES times each"
time_requests dead "$API/api/events?limit=100&state=dead" "$SAMPLES"
time_requests search "$API/api/events?q=a77e0000-0000-4000-8000-$(printf '%012x' $((EVENTS / 3)))" "$SAMPLES"

# --- b) resident memory of $STREAMS open streams on the same server ---
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
sleep 1
RSS_BEFORE=$(rss_kib "${PID[big]}")
log "$STREAMS open /api/stream streams"
coproc SSE { exec "$TOOLS/sse_clients" --port "${API##*:}" --count "$STREAMS" --hold-seconds 120; }
SSE_CLIENT=$SSE_PID
pids+=("$SSE_CLIENT")
read -r -t 60 ready <&"${SSE[0]}" || die "sse_clients did not get ready"
[ "$ready" = "ready $STREAMS" ] || die "sse_clients: $ready"
# A few events while they are open, so every stream has sent something.
for ((i = 1; i <= 10; i++)); do
  sed "s/d9f5d293-7110-461e-a875-3beb089e79f3/feed0000-0000-4000-8000-$(printf '%012x' "$i")/" "$EVENT" |
    curl -sf -o /dev/null -H 'Content-Type: application/json' -H "verification-token: $TOKEN" \
      --data-binary @- "${WEBHOOK[big]}" || die "posting an event failed"
done
sleep 1
RSS_STREAMS=$(rss_kib "${PID[big]}")
kill -TERM "$SSE_CLIENT"
read -r -t 10 received <&"${SSE[0]}" || received="received ? ?"
stop_pid "$SSE_CLIENT"
STREAM_EVENTS=$(cut -d' ' -f2 <<<"$received")
stop_pid "${PID[big]}"
rm -rf "$WORK/big-data"

# --- c) ingest: admin off against admin on with $CONSUMERS streams reading every event ---
start_receiver off "$WORK/off-data" off
start_receiver on "$WORK/on-data" on
if ((CONSUMERS > 0)); then
  coproc CONSUME { exec "$TOOLS/sse_clients" --port "${ADMIN[on]##*:}" --count "$CONSUMERS" --hold-seconds 3600; }
  CONSUME_CLIENT=$CONSUME_PID
  pids+=("$CONSUME_CLIENT")
  read -r -t 60 ready <&"${CONSUME[0]}" || die "sse_clients did not get ready"
fi
RUN_BASE=$((RANDOM % 0x7fff))
RUN_INDEX=0
declare -A RPS P99 COUNTED ERRORS
# wrk_run NAME SECONDS: bench/run.sh's load at 32 connections; the BENCH line on stdout.
wrk_run() {
  RUN_INDEX=$((RUN_INDEX + 1)) # each run its own run ID: no run repeats another's Log IDs
  wrk -t 2 -c 32 -d "$2s" --timeout 5s -s "$LUA" "${WEBHOOK[$1]}" \
    -- "$EVENT" "$TOKEN" "$(printf '%04x%04x' "$RUN_BASE" "$RUN_INDEX")" >"$WORK/wrk.out" ||
    die "wrk failed against $1: $(cat "$WORK/wrk.out")"
  grep '^BENCH ' "$WORK/wrk.out" || die "no BENCH line from wrk: $(cat "$WORK/wrk.out")"
}
field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
for r in off on; do
  log "warm-up $r: ${WARMUP}s"
  line=$(wrk_run "$r" "$WARMUP")
  COUNTED[$r]=$(field "$line" requests)
  ERRORS[$r]=$(field "$line" status_errors)
done
for ((round = 1; round <= ROUNDS; round++)); do
  order=(off on)
  ((round % 2 == 0)) && order=(on off) # who goes first swaps: a drift of the machine cancels out
  for r in "${order[@]}"; do
    log "round $round: admin $r, 32 connections, ${DURATION}s"
    line=$(wrk_run "$r" "$DURATION")
    RPS[$r]="${RPS[$r]:-} $(field "$line" rps)"
    P99[$r]="${P99[$r]:-} $(field "$line" p99_us)"
    COUNTED[$r]=$((COUNTED[$r] + $(field "$line" requests)))
    ERRORS[$r]=$((ERRORS[$r] + $(field "$line" status_errors)))
  done
done
CONSUMED=0
if ((CONSUMERS > 0)); then
  kill -TERM "$CONSUME_CLIENT"
  read -r -t 10 received <&"${CONSUME[0]}" || received="received ? ?"
  stop_pid "$CONSUME_CLIENT"
  CONSUMED=$(cut -d' ' -f2 <<<"$received")
fi
stop_pid "${PID[off]}"
stop_pid "${PID[on]}"
STORED_ON=$(sqlite3 "$WORK/on-data/journal.sqlite" "select count(*) from events")

BUSY_AFTER=$(cpu_busy)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the figures ---
median_of() { tr ' ' '\n' <<<"$1" | sed '/^$/d' >"$WORK/m" && percentile 50 "$WORK/m"; }
LIST_P50=$(percentile 50 "$WORK/list.ms")
LIST_P95=$(percentile 95 "$WORK/list.ms")
EVENT_P50=$(percentile 50 "$WORK/event.ms")
EVENT_P95=$(percentile 95 "$WORK/event.ms")
ADDED_KIB=$((RSS_STREAMS - RSS_BEFORE))
OFF_RPS=$(median_of "${RPS[off]}")
ON_RPS=$(median_of "${RPS[on]}")
OFF_P99=$(median_of "${P99[off]}")
ON_P99=$(median_of "${P99[on]}")
INGEST_RATIO=$(awk -v a="$ON_RPS" -v b="$OFF_RPS" 'BEGIN { printf "%.3f", a / b }')

under() { awk -v v="$1" -v t="$2" 'BEGIN { print (v < t) ? 1 : 0 }'; }
t_list=$(under "$LIST_P95" 50)
t_event=$(under "$EVENT_P95" 50)
t_streams=$(under "$ADDED_KIB" $((16 * 1024)))
t_ingest=$(awk -v r="$INGEST_RATIO" 'BEGIN { print (r >= 0.95) ? 1 : 0 }')
verdict() { if [ "$1" = 1 ]; then echo "PASS ($2)"; else echo "MISS ($2)"; fi; }
mib() { awk -v kib="$1" 'BEGIN { printf "%.1f MiB", kib / 1024 }'; }
us_ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
api_row() { # api_row LABEL NAME
  printf '| %s | %s ms | %s ms | %s ms |\n' "$1" "$(percentile 50 "$WORK/$2.ms")" \
    "$(percentile 95 "$WORK/$2.ms")" "$(sort -g "$WORK/$2.ms" | tail -1)"
}

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p "$(dirname "$RESULTS")"
{
  echo "# The event console: API latency, stream memory, ingest"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · commit $COMMIT · $(nproc) cores" \
    "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)) · journal on" \
    "$(df --output=fstype "$WORK" | tail -1) · $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo
  echo "Other work on the machine: ${BUSY_BEFORE}% CPU busy just before the bench, ${BUSY_AFTER}% just"
  echo "after; load average $LOAD_BEFORE before, $LOAD_AFTER after."
  if ((BUSY_BEFORE > 10 || BUSY_AFTER > 10)); then
    echo "**The machine was busy with other work: the figures are lower and noisier than on a quiet machine.**"
  fi
  echo
  echo "## a) The JSON API over $EVENTS events"
  echo
  echo "The journal (bench/console_journal.sh: ${JOURNAL_MIB} MiB, two deliveries and one attempt per"
  echo "event) was made in ${MADE_S} s; the server was ready on it ${OPEN_S} s after its start. Each"
  echo "figure: $SAMPLES requests on one keep-alive connection after one not counted (curl's"
  echo "time_total: request to last byte)."
  echo
  echo "| request | median | p95 | max |"
  echo "|---|---:|---:|---:|"
  api_row "\`GET /api/events?limit=100\` (newest page)" list
  api_row "\`GET /api/events/{key}\` (event $((EVENTS / 2 + 1)) of $EVENTS)" event
  api_row "informational: \`GET /api/events?limit=100&state=dead\` (1 event in 100)" dead
  api_row "informational: \`GET /api/events?q=<attempt ID>\`" search
  echo
  echo "## b) Open streams"
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| server VmRSS before the streams | $(mib "$RSS_BEFORE") |"
  echo "| with $STREAMS open \`/api/stream\` streams (10 events sent to them) | $(mib "$RSS_STREAMS")" \
    "(+$(mib "$ADDED_KIB"), $(awk -v k="$ADDED_KIB" -v n="$STREAMS" 'BEGIN { printf "%.1f KiB", k / n }') per stream;" \
    "$STREAM_EVENTS \`event\` messages read) |"
  echo
  echo "## c) Ingest with the console open"
  echo
  echo "bench/run.sh's load (wrk, 32 connections, a new Log ID per request, complete.json) against two"
  echo "receivers running side by side, alternating (who goes first swaps each round), $ROUNDS rounds of ${DURATION}s after a ${WARMUP}s"
  echo "warm-up each: one without an admin listener, one with it and $CONSUMERS \`/api/stream\` readers"
  echo "receiving every event ($CONSUMED \`event\` messages read for $STORED_ON events stored)."
  echo
  echo "| receiver | requests/s per round | median | p99 per round (µs) | median p99 |"
  echo "|---|---|---:|---|---:|"
  printf '| admin off | %s | %.0f | %s | %s |\n' "${RPS[off]# }" "$OFF_RPS" "${P99[off]# }" "$(us_ms "$OFF_P99")"
  printf '| admin on, %d streams | %s | %.0f | %s | %s |\n' "$CONSUMERS" "${RPS[on]# }" "$ON_RPS" \
    "${P99[on]# }" "$(us_ms "$ON_P99")"
  echo
  echo "Status errors: ${ERRORS[off]} (off), ${ERRORS[on]} (on); 200s counted: ${COUNTED[off]} (off), ${COUNTED[on]} (on)."
  echo
  echo "## Targets"
  echo
  echo "- \`GET /api/events?limit=100\` < 50 ms: $(verdict "$t_list" "median $LIST_P50 ms, p95 $LIST_P95 ms")"
  echo "- \`GET /api/events/{key}\` < 50 ms: $(verdict "$t_event" "median $EVENT_P50 ms, p95 $EVENT_P95 ms")"
  echo "- $STREAMS open streams add < 16 MiB resident: $(verdict "$t_streams" "+$(mib "$ADDED_KIB")")"
  echo "- ingest with the console open and streaming within 5 % of without: $(verdict "$t_ingest" \
    "$(printf '%.0f' "$ON_RPS")/s against $(printf '%.0f' "$OFF_RPS")/s = ${INGEST_RATIO}×")"
} >"$RESULTS"
echo
cat "$RESULTS"
((t_list && t_event && t_streams && t_ingest && ERRORS[off] == 0 && ERRORS[on] == 0)) ||
  die "a target was missed or a request failed (see $RESULTS)"
