#!/usr/bin/env bash
# `make bench-download`: the download handler against nginx on loopback, in one run:
#   1. memory: the receiver downloads a generated 1 GiB NDJSON file (made in a temp dir here, never
#      committed) and its peak resident set (VmHWM) must stay under 64 MiB;
#   2. throughput: the synthea fixture export (17 files, 8,248 resources, 10.4 MB) fetched and
#      verified, served plain and with Content-Encoding: gzip.
# Prints the figures; exits 1 when the memory target is missed or a stored file differs.
#
# Environment (all optional):
#   BENCH_DOWNLOAD_MIB  size of the generated file in MiB (1024)
#   BENCH_RUNS          synthea runs per serving mode (5)
#   BENCH_TMPDIR        where the temp dir goes (default build/, on the repo's disk)
#   FBR_BENCH_BIN       a prebuilt fhir-bulk-receiver (skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SIZE_MIB=${BENCH_DOWNLOAD_MIB:-1024}
RUNS=${BENCH_RUNS:-5}
LIMIT_MIB=64
BIN=${FBR_BENCH_BIN:-$ROOT/build/release/server/fhir-bulk-receiver}
FIXTURES=$ROOT/tests/fixtures/synthea-r4
NGINX=/usr/sbin/nginx

log() { printf 'bench-download: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ -x "$NGINX" ] || die "nginx is missing (scripts/install-deps.sh installs it)"
if [ -z "${FBR_BENCH_BIN:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$(nproc)" --target fhir-bulk-receiver >/dev/null ||
    die "the release build failed (cmake --build --preset release)"
fi
[ -x "$BIN" ] || die "no server binary at $BIN"

mkdir -p "${BENCH_TMPDIR:-$ROOT/build}"
WORK=$(mktemp -d "${BENCH_TMPDIR:-$ROOT/build}/bench-download.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

wait_for_port() { # wait_for_port PORT PID
  local i
  for ((i = 0; i < 1000; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "a process exited at start (see $WORK)"
    sleep 0.01
  done
  die "nothing listens on port $1 after 10 s"
}

now_ms() { date +%s%3N; }

# --- the export's files, served by nginx ---
WWW=$WORK/www
mkdir -p "$WWW/plain" "$WWW/encoded" "$WWW/big"
for gz in "$FIXTURES"/*.ndjson.gz; do
  name=$(basename "$gz" .gz)
  gzip -dc "$gz" >"$WWW/plain/$name"
  cp "$gz" "$WWW/encoded/$name.gz"
done
SYNTHEA_BYTES=$(cat "$WWW"/plain/*.ndjson | wc -c)
SYNTHEA_LINES=$(cat "$WWW"/plain/*.ndjson | wc -l)

# A realistic line (a synthea Observation, ~1 KB) repeated up to the size asked for.
# (The writers of these pipes end on SIGPIPE when head has enough: not an error.)
LINE=$(gzip -dc "$FIXTURES/Observation.ndjson.gz" | head -n 1 || true)
LINES=$((SIZE_MIB * 1048576 / (${#LINE} + 1)))
log "generating $SIZE_MIB MiB of NDJSON ($LINES lines) in $WORK"
yes "$LINE" | head -n "$LINES" >"$WWW/big/Observation.ndjson" || true
BIG_BYTES=$(stat -c %s "$WWW/big/Observation.ndjson")
((BIG_BYTES == LINES * (${#LINE} + 1))) || die "could not generate the file (disk full?)"
BIG_SHA=$(sha256sum "$WWW/big/Observation.ndjson" | cut -d' ' -f1)

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/client_body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  types { application/fhir+ndjson ndjson; }
  default_type application/octet-stream;
  sendfile on;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WWW;
    location /encoded/ { gzip_static on; }
  }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" \
  >"$WORK/nginx/out.log" 2>&1 &
pids+=($!)
wait_for_port "$NGINX_PORT" "$!"

# --- the receiver, with one download handler ---
PORT=$(free_port)
TOKEN="bench-$RANDOM$RANDOM"
CONFIG=$WORK/receiver.json
cat >"$CONFIG" <<EOF
{
  "listen": "127.0.0.1:$PORT",
  "verification_tokens": ["$TOKEN"],
  "data_dir": "$WORK/data",
  "log": {"level": "info", "format": "text"},
  "handlers": [{"name": "fetch", "type": "download", "dir": "$WORK/downloads",
                "allowed_hosts": ["127.0.0.1"]}]
}
EOF
"$BIN" serve --config "$CONFIG" >"$WORK/receiver.log" 2>&1 &
RECEIVER_PID=$!
pids+=("$RECEIVER_PID")
wait_for_port "$PORT" "$RECEIVER_PID"

# event LOG_ID TYPE:URL...: a complete status-check-response listing those files
event() {
  local id=$1 sep="" f
  shift
  printf '{"Meta": {"DataModel": "FHIR Bulk Data Access", "EventType": "status-check-response",'
  printf ' "Logs": [{"ID": "%s"}]}, "status": 200, "transactionTime": "2024-02-20T10:00:00Z",' "$id"
  printf ' "request": "/fhir/$export", "requiresAccessToken": false, "output": ['
  for f in "$@"; do
    printf '%s{"type": "%s", "url": "%s"}' "$sep" "${f%%:*}" "${f#*:}"
    sep=", "
  done
  printf '], "error": []}\n'
}

# download LOG_ID TYPE:URL...: posts the event, waits until its delivery is done; prints ms taken
download() {
  local id=$1 start state i
  event "$@" >"$WORK/$id.json"
  start=$(now_ms)
  "$BIN" send --url "http://127.0.0.1:$PORT/webhook" --token "$TOKEN" "$WORK/$id.json" >/dev/null ||
    die "the receiver refused the event"
  for ((i = 0; i < 60000; i++)); do
    state=$(sqlite3 "$WORK/data/journal.sqlite" \
      "select state from deliveries where event_key = '$id'" 2>/dev/null || true)
    [ "$state" = done ] && break
    [ "$state" = dead ] && die "delivery $id is dead: $(sqlite3 "$WORK/data/journal.sqlite" \
      "select last_error from deliveries where event_key = '$id'")"
    kill -0 "$RECEIVER_PID" 2>/dev/null || die "the receiver exited (see $WORK/receiver.log)"
    sleep 0.01
  done
  [ "$state" = done ] || die "delivery $id not done after 10 minutes"
  echo $(($(now_ms) - start))
}

# handler_ms LOG_ID: the handler's own time for the event (its download_complete log line)
handler_ms() {
  grep "download_complete log_id=$1 " "$WORK/receiver.log" | sed -n 's/.* duration_ms=\([0-9]*\).*/\1/p'
}

kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# --- 1. memory: one 1 GiB file ---
RSS_BEFORE=$(kib "$RECEIVER_PID" VmRSS)
log "downloading $BIG_BYTES bytes ($SIZE_MIB MiB)"
BIG_MS=$(download big-1 "Observation:http://127.0.0.1:$NGINX_PORT/big/Observation.ndjson")
PEAK_KIB=$(kib "$RECEIVER_PID" VmHWM)
STORED_SHA=$(sha256sum "$WORK/downloads/big-1/Observation.1.ndjson" | cut -d' ' -f1)
[ "$STORED_SHA" = "$BIG_SHA" ] || die "the stored 1 GiB file differs from the source"
rm -f "$WORK/downloads/big-1/Observation.1.ndjson"

# --- 2. throughput: the synthea export, plain and gzip-encoded ---
synthea_files() { # synthea_files PREFIX: TYPE:URL for every fixture file
  local f name
  for f in "$WWW"/plain/*.ndjson; do
    name=$(basename "$f" .ndjson)
    echo "$name:http://127.0.0.1:$NGINX_PORT/$1/$name.ndjson"
  done
}
mapfile -t PLAIN < <(synthea_files plain)
mapfile -t ENCODED < <(synthea_files encoded)
plain_ms=()
encoded_ms=()
plain_handler_ms=()
encoded_handler_ms=()
for ((r = 1; r <= RUNS; r++)); do
  plain_ms+=("$(download "plain-$r" "${PLAIN[@]}")")
  plain_handler_ms+=("$(handler_ms "plain-$r")")
  encoded_ms+=("$(download "encoded-$r" "${ENCODED[@]}")")
  encoded_handler_ms+=("$(handler_ms "encoded-$r")")
done
BIG_HANDLER_MS=$(handler_ms big-1)
for f in "$WWW"/plain/*.ndjson; do
  cmp -s "$f" "$WORK/downloads/plain-1/$(basename "$f" .ndjson).1.ndjson" ||
    die "stored $(basename "$f") differs from the source"
  cmp -s "$f" "$WORK/downloads/encoded-1/$(basename "$f" .ndjson).1.ndjson" ||
    die "stored $(basename "$f") (gzip-encoded) differs from the source"
done
PEAK_AFTER_KIB=$(kib "$RECEIVER_PID" VmHWM)

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
mbps() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.1f", b / 1e6 / (ms / 1000) }'; }
PLAIN_MED=$(median "${plain_ms[@]}")
ENCODED_MED=$(median "${encoded_ms[@]}")
PLAIN_HANDLER_MED=$(median "${plain_handler_ms[@]}")
ENCODED_HANDLER_MED=$(median "${encoded_handler_ms[@]}")
PEAK_MIB=$(awk -v k="$PEAK_KIB" 'BEGIN { printf "%.1f", k / 1024 }')

cat <<EOF

## Download handler (bench/download_bench.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs)

Times: from the POST to the delivery seen \`done\` in the journal (send, commit, dispatch, the
download, the bench's 10 ms polling); in brackets the handler's own time (its download_complete line).

| measure | value |
|---|---|
| generated NDJSON file | $BIG_BYTES bytes ($SIZE_MIB MiB, $LINES lines of ${#LINE} bytes) |
| fetched, verified (every line parsed), stored, fsync'd in | $BIG_MS ms ($(mbps "$BIG_BYTES" "$BIG_MS") MB/s) [handler $BIG_HANDLER_MS ms] |
| receiver RSS before / peak (VmHWM) during the 1 GiB download | $((RSS_BEFORE / 1024)) MiB / **$PEAK_MIB MiB** (target < $LIMIT_MIB MiB) |
| synthea export, plain (17 files, $SYNTHEA_BYTES bytes, $SYNTHEA_LINES resources), median of $RUNS | $PLAIN_MED ms ($(mbps "$SYNTHEA_BYTES" "$PLAIN_MED") MB/s of NDJSON) [handler $PLAIN_HANDLER_MED ms, $(mbps "$SYNTHEA_BYTES" "$PLAIN_HANDLER_MED") MB/s] |
| synthea export, Content-Encoding: gzip, median of $RUNS | $ENCODED_MED ms ($(mbps "$SYNTHEA_BYTES" "$ENCODED_MED") MB/s of NDJSON) [handler $ENCODED_HANDLER_MED ms, $(mbps "$SYNTHEA_BYTES" "$ENCODED_HANDLER_MED") MB/s] |
| receiver peak RSS after all runs | $((PEAK_AFTER_KIB / 1024)) MiB |
EOF

if ((PEAK_KIB >= LIMIT_MIB * 1024)); then
  log "FAIL: peak RSS $PEAK_MIB MiB is not under $LIMIT_MIB MiB"
  exit 1
fi
