# Shared by the bench scripts (sourced; each defines its own log and die first).

# A port nothing listens on, below the ephemeral range so client sockets cannot take it.
free_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}

# CPU busy (all processes, %) over one second: the bench shares the machine, and other work on it
# (a compiler, another test) lowers and scatters every figure, so it is measured and reported.
cpu_busy() {
  local a b
  read -r -a a </proc/stat
  sleep 1
  read -r -a b </proc/stat
  awk -v u=$((b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8])) \
    -v i=$((b[4] + b[5] - a[4] - a[5])) 'BEGIN { printf "%.0f", (u + i) ? 100 * u / (u + i) : 0 }'
}

# Waits (BENCH_QUIET_WAIT seconds at most, 60 unless set) for the machine's CPU to be under 10 %
# busy; prints the last cpu_busy figure (the caller reports it).
wait_until_quiet() {
  local busy waited
  busy=$(cpu_busy)
  for ((waited = 0; busy > 10 && waited < ${BENCH_QUIET_WAIT:-60}; waited += 5)); do
    ((waited == 0)) && log "the machine is busy (${busy}% CPU): waiting for it to calm down"
    sleep 4
    busy=$(cpu_busy)
  done
  echo "$busy"
}

# Installs what the bench scripts drive from Debian when it is missing: nginx, wrk, curl, sqlite3,
# webhook and procps (the build's own packages come from make deps), and Node.js when no node is
# on PATH (the peer is ten lines of node:http).
install_bench_packages() {
  local missing=() p
  for p in nginx wrk curl sqlite3 webhook procps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  command -v node >/dev/null || command -v nodejs >/dev/null || missing+=(nodejs)
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}
