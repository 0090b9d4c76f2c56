# Sourced by bench/run.sh: the peers the receiver is compared with (issue 17) and the rounds in
# which each one, alone, takes the same wrk load (post_event.lua: the seed event, a new Log ID per
# request), alternating, BENCH_ROUNDS times; the report takes the medians.
#
#   nginx       `return 200` with no work: the ceiling of the machine's loopback HTTP
#   node        bench/peers/node_receiver.js: a plain Node.js receiver, no fsync
#   node_fsync  bench/peers/node_fsync_receiver.js: the same plus an append + fdatasync per request
#   webhook     adnanh/webhook (Debian's `webhook`): one hook that runs /bin/true, 200 after it ran
#   receiver    fhir-bulk-receiver, log.level info: a durable (fsync'd) 200 per new event
#
# Uses run.sh's WORK, pids, log, die, free_port, start_receiver, wrk_run, field and RESULT.

PEERS=(nginx node node_fsync webhook receiver)
declare -A PEER_PID PEER_URL PEER_DATA
declare -A CPU_USER CPU_SYS # µs of the peer's CPU per request (per journaled event: the receiver)
declare -A FLOOR            # FLOOR[rewrite_p50_R] and so on: the disk's floor before round R
RECEIVER_COUNTED=0
RECEIVER_STATUS_ERRORS=0

wait_for_port() { # wait_for_port PORT PID NAME LOG: poll the port for up to 10 s
  local i
  for ((i = 0; i < 1000; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start: $(tail -5 "$4")"
    sleep 0.01
  done
  die "$3 on port $1 was not listening within 10 s"
}

# start_peer NAME URL-PATH LOG COMMAND...: a peer in the background on a port from free_port
# (COMMAND's @PORT@ is replaced by it), tracked by pid.
start_peer() {
  local name=$1 path=$2 logfile=$3 port arg args=()
  shift 3
  port=$(free_port)
  for arg in "$@"; do args+=("${arg//@PORT@/$port}"); done
  "${args[@]}" >"$logfile" 2>&1 &
  PEER_PID[$name]=$!
  pids+=("$!")
  wait_for_port "$port" "${PEER_PID[$name]}" "$name" "$logfile"
  PEER_URL[$name]="http://127.0.0.1:$port$path"
}

start_peers() {
  local port
  port=$(free_port)
  mkdir -p "$WORK/nginx"
  sed -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$(nproc)|g" -e "s|@DIR@|$WORK/nginx|g" \
    bench/nginx.conf.in >"$WORK/nginx/nginx.conf"
  "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" \
    >"$WORK/nginx/stdout.log" 2>&1 &
  PEER_PID[nginx]=$!
  pids+=("$!")
  wait_for_port "$port" "${PEER_PID[nginx]}" nginx "$WORK/nginx/error.log"
  PEER_URL[nginx]="http://127.0.0.1:$port/webhook"

  start_peer node /webhook "$WORK/node.log" "$NODE" "$ROOT/bench/peers/node_receiver.js" @PORT@
  start_peer node_fsync /webhook "$WORK/node-fsync.log" \
    "$NODE" "$ROOT/bench/peers/node_fsync_receiver.js" @PORT@ "$WORK/node-fsync.data"
  start_peer webhook /hooks/webhook "$WORK/webhook.log" \
    "$WEBHOOK" -ip 127.0.0.1 -port @PORT@ -hooks "$ROOT/bench/peers/webhook.json"

  start_receiver receiver info
  PEER_PID[receiver]=$RECEIVER_PID
  PEER_URL[receiver]="http://127.0.0.1:$RECEIVER_PORT/webhook"
  PEER_DATA[receiver]=$RECEIVER_DATA
}

# start_diagnostic NAME LEVEL [DATA_DIR]: one more receiver, measured alone as peer NAME
start_diagnostic() {
  start_receiver "$1" "$2" "${3:-}"
  PEER_PID[$1]=$RECEIVER_PID
  PEER_URL[$1]="http://127.0.0.1:$RECEIVER_PORT/webhook"
  PEER_DATA[$1]=$RECEIVER_DATA
}

stop_peers() { # the receiver's journal stays for the journal check (run.sh removes it)
  local peer
  for peer in "${PEERS[@]}"; do stop_pid "${PEER_PID[$peer]}" TERM; done
  RECEIVER_PID=""
  rm -f "$WORK/node-fsync.data"
}

# proc_ticks PID: "USER SYSTEM" clock ticks of PID (its threads and the children it has reaped:
# webhook's commands) plus those of its live children (nginx's workers), from /proc/PID/stat.
proc_ticks() {
  local pid user=0 system=0 rest f
  for pid in "$1" $(pgrep -P "$1" || true); do
    rest=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
    # After "(comm) " the fields start at stat's third: utime is the 12th, stime 13th, cutime
    # 14th, cstime 15th.
    read -r -a f <<<"$rest"
    user=$((user + f[11] + f[13]))
    system=$((system + f[12] + f[14]))
  done
  echo "$user $system"
}

journal_events() { sqlite3 "$1/journal.sqlite" "select count(*) from events"; }

# measure RUN PEER CONNECTIONS SECONDS: one wrk run against PEER alone; RESULT[RUN] is its BENCH
# line, CPU_USER[RUN] and CPU_SYS[RUN] the peer's CPU per request (a receiver: per event journaled
# during the run, which counts the answers wrk had in flight at its end too).
measure() {
  local run=$1 peer=$2 pid=${PEER_PID[$2]} data=${PEER_DATA[$2]:-} u0 s0 u1 s1 events=0 n
  [ -n "$data" ] && events=$(journal_events "$data")
  read -r u0 s0 < <(proc_ticks "$pid")
  wrk_run "$run" "${PEER_URL[$peer]}" "$3" "$4"
  read -r u1 s1 < <(proc_ticks "$pid")
  if [ -n "$data" ]; then
    n=$(($(journal_events "$data") - events))
  else
    n=$(field "${RESULT[$run]}" requests)
  fi
  if [ "$peer" = receiver ]; then
    RECEIVER_COUNTED=$((RECEIVER_COUNTED + $(field "${RESULT[$run]}" requests)))
    RECEIVER_STATUS_ERRORS=$((RECEIVER_STATUS_ERRORS + $(field "${RESULT[$run]}" status_errors)))
  fi
  CPU_USER[$run]=$(awk -v t=$((u1 - u0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
  CPU_SYS[$run]=$(awk -v t=$((s1 - s0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
}

# floor R: the disk's floor right before round R's 1-connection receiver run: write + fdatasync of
# FLOOR_BYTES (about one event and its receipt), appending and rewriting in place.
floor() {
  local out
  out=$("$TOOLS/fsync_latency" --dir "$WORK" --count "$FLOOR_COUNT" --bytes "$FLOOR_BYTES")
  FLOOR[append_p50_$1]=$(sed -n 's/^append p50_us=\([0-9]*\).*/\1/p' <<<"$out")
  FLOOR[append_p99_$1]=$(sed -n 's/^append .*p99_us=\([0-9]*\).*/\1/p' <<<"$out")
  FLOOR[rewrite_p50_$1]=$(sed -n 's/^overwrite p50_us=\([0-9]*\).*/\1/p' <<<"$out")
  FLOOR[rewrite_p99_$1]=$(sed -n 's/^overwrite .*p99_us=\([0-9]*\).*/\1/p' <<<"$out")
}

# The rounds: a warm-up per peer, then at 32 connections every peer once per round (the order
# turns by one each round), at 1 connection the floor, the receiver and nginx, at 256 connections
# the receiver and nginx. RESULT keys: PEER_CONNECTIONS_ROUND.
run_peer_rounds() {
  local r k peer
  log "warm-up: ${WARMUP}s per peer at 32 connections"
  for peer in "${PEERS[@]}"; do measure "warmup_$peer" "$peer" 32 "$WARMUP"; done
  for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#PEERS[@]}; k++)); do
      peer=${PEERS[(r - 1 + k) % ${#PEERS[@]}]}
      log "round $r/$ROUNDS: $peer, 32 connections, ${DURATION}s"
      measure "${peer}_32_$r" "$peer" 32 "$DURATION"
    done
  done
  for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS: nginx, the disk's floor, receiver, 1 connection, ${DURATION}s"
    if ((r % 2)); then measure "nginx_1_$r" nginx 1 "$DURATION"; fi
    floor "$r"
    measure "receiver_1_$r" receiver 1 "$DURATION"
    if ((r % 2 == 0)); then measure "nginx_1_$r" nginx 1 "$DURATION"; fi
  done
  for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS: receiver and nginx, 256 connections, ${DURATION}s"
    if ((r % 2 == 0)); then measure "nginx_256_$r" nginx 256 "$DURATION"; fi
    measure "receiver_256_$r" receiver 256 "$DURATION"
    if ((r % 2)); then measure "nginx_256_$r" nginx 256 "$DURATION"; fi
  done
}

# --- medians over the rounds ---
median() { # the median of the numbers on stdin (the mean of the middle two when even)
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "";
    else if (NR % 2) print v[(NR + 1) / 2];
    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
rounds_of() { # rounds_of RUN KEY: KEY of RESULT[RUN_1] .. RESULT[RUN_ROUNDS], one a line
  local r
  for ((r = 1; r <= ROUNDS; r++)); do field "${RESULT[${1}_$r]}" "$2"; done
}
med() { rounds_of "$1" "$2" | median; } # med RUN KEY
med_cpu() {                            # med_cpu RUN: median user, system and total µs per request
  local r u s
  u=$(for ((r = 1; r <= ROUNDS; r++)); do echo "${CPU_USER[${1}_$r]}"; done | median)
  s=$(for ((r = 1; r <= ROUNDS; r++)); do echo "${CPU_SYS[${1}_$r]}"; done | median)
  for ((r = 1; r <= ROUNDS; r++)); do
    awk -v u="${CPU_USER[${1}_$r]}" -v s="${CPU_SYS[${1}_$r]}" 'BEGIN { print u + s }'
  done | median | awk -v u="$u" -v s="$s" '{ printf "%.1f %.1f %.1f", u, s, $1 }'
}
med_floor() { # med_floor KIND: the median of FLOOR[KIND_1] .. FLOOR[KIND_ROUNDS]
  local r
  for ((r = 1; r <= ROUNDS; r++)); do echo "${FLOOR[${1}_$r]}"; done | median
}
errors_of() { # errors_of BENCH-LINE: socket errors, non-2xx and timeouts of one run
  local k sum=0
  for k in connect_errors read_errors write_errors status_errors timeouts; do
    sum=$((sum + $(field "$1" "$k")))
  done
  echo "$sum"
}
errors_total() { # errors_total RUN: errors over all rounds
  local r sum=0
  for ((r = 1; r <= ROUNDS; r++)); do sum=$((sum + $(errors_of "${RESULT[${1}_$r]}"))); done
  echo "$sum"
}
