#!/usr/bin/env bash
# CPU per request of the ingest path: starts one receiver, drives it with wrk (the bench's
# post_event.lua, a new Log ID per request) and prints the server's own CPU time per journaled
# event, user and system apart (from /proc/PID/stat), so runs compare even on a machine that is
# busy with other work (wall-clock req/s does not).
#
#   bench/cpu_per_request.sh [--callgrind] [--bin BIN] [--connections N] [--seconds S] [--level L]
#
# --callgrind runs the server under valgrind --tool=callgrind and prints instructions per request
# (user space only, counted from the first request to the last: start-up excluded), noise-free.
# Under valgrind the threads run one at a time, so batches differ from a native run; compare
# callgrind figures only with callgrind figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/build/release/server/fhir-bulk-receiver
CONNECTIONS=32
SECONDS_RUN=10
LEVEL=info
CALLGRIND=0
while (($#)); do
  case $1 in
    --callgrind) CALLGRIND=1 ;;
    --bin) BIN=$2 && shift ;;
    --connections) CONNECTIONS=$2 && shift ;;
    --seconds) SECONDS_RUN=$2 && shift ;;
    --level) LEVEL=$2 && shift ;;
    *) echo "unknown argument $1" >&2 && exit 2 ;;
  esac
  shift
done

log() { printf 'cpu_per_request: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
install_bench_packages
[ -x "$BIN" ] || die "no server binary at $BIN"

WORK=$(mktemp -d "$ROOT/build/cpu.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

TOKEN="cpu-$RANDOM$RANDOM"
PORT=$(free_port)
cat >"$WORK/config.json" <<EOF
{
  "listen": "127.0.0.1:$PORT",
  "path": "/webhook",
  "verification_tokens": ["$TOKEN"],
  "data_dir": "$WORK/data",
  "log": {"level": "$LEVEL", "format": "text"},
  "handlers": []
}
EOF
if ((CALLGRIND)); then
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --dump-instr=no \
    --collect-atstart=yes "$BIN" serve --config "$WORK/config.json" >"$WORK/server.log" 2>"$WORK/valgrind.log" &
else
  "$BIN" serve --config "$WORK/config.json" >"$WORK/server.log" 2>&1 &
fi
SERVER_PID=$!
for ((i = 0; i < 3000; i++)); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited at start: $(tail -5 "$WORK/server.log")"
  sleep 0.01
done

ticks() { # user and system clock ticks of the server so far
  awk '{ print $14, $15 }' "/proc/$SERVER_PID/stat"
}
events() { sqlite3 "$WORK/data/journal.sqlite" "select count(*) from events"; }

# One warm-up request, then zero the counters.
URL="http://127.0.0.1:$PORT/webhook"
wrk -t 1 -c 1 -d 1s -s bench/post_event.lua "$URL" -- tests/fixtures/events/complete.json "$TOKEN" \
  "$(printf '%08x' $((RANDOM * 2)))" >/dev/null
if ((CALLGRIND)); then callgrind_control --zero "$SERVER_PID" >/dev/null; fi
EVENTS_BEFORE=$(events)
read -r U0 S0 < <(ticks)
threads=2
((CONNECTIONS < threads)) && threads=$CONNECTIONS
wrk -t "$threads" -c "$CONNECTIONS" -d "${SECONDS_RUN}s" --timeout 5s -s bench/post_event.lua "$URL" \
  -- tests/fixtures/events/complete.json "$TOKEN" "$(printf '%08x' $((RANDOM * 2 + 1)))" >"$WORK/wrk.out"
read -r U1 S1 < <(ticks)
if ((CALLGRIND)); then callgrind_control --dump "$SERVER_PID" >/dev/null; fi
EVENTS=$(($(events) - EVENTS_BEFORE))
((EVENTS > 0)) || die "no events journaled: $(cat "$WORK/wrk.out")"
HZ=$(getconf CLK_TCK)
BENCH=$(grep '^BENCH ' "$WORK/wrk.out")
awk -v u=$((U1 - U0)) -v s=$((S1 - S0)) -v n="$EVENTS" -v hz="$HZ" -v c="$CONNECTIONS" \
  -v b="$BENCH" 'BEGIN {
    printf "connections=%d events=%d cpu_us_per_request=%.1f (user %.1f, sys %.1f)\n%s\n",
      c, n, (u + s) * 1e6 / hz / n, u * 1e6 / hz / n, s * 1e6 / hz / n, b }'
if ((CALLGRIND)); then
  sleep 0.5
  # The dump after the run: one file per dump (name.1, .2, ...); the last is the run's.
  out=$(ls -t "$WORK"/callgrind.out* | head -1)
  IR=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  awk -v ir="$IR" -v n="$EVENTS" 'BEGIN { printf "instructions_per_request=%.0f (total %d)\n", ir / n, ir }'
  mkdir -p "$ROOT/build/callgrind"
  cp "$out" "$ROOT/build/callgrind/latest.out"
  log "profile copied to build/callgrind/latest.out (callgrind_annotate --inclusive=yes)"
fi
