#!/usr/bin/env bash
# `make docker-test`: builds the Docker image for real and runs it, on a machine with no Docker daemon
# and no registry: buildah builds the Dockerfile from local Debian base images, and `buildah run
# --isolation chroot --network host` runs the image's programs. Everything listens on 127.0.0.1.
#
#  1. base images debian:bookworm(-slim): made by ../shared/tools/container-base.sh if missing
#  2. buildah bud --format docker (keeps HEALTHCHECK) -t fhir-bulk-receiver:test .
#  3. the image's config: user, volume, env, port, healthcheck, entrypoint, cmd
#  4. inside a working container: runs as uid 10001, `--version`, `check-config` of docker/config.json,
#     `serve` refuses to start without a token
#  5. `serve` in the background (token from the environment, FBR_LISTEN=127.0.0.1:<free port>): waits
#     for /healthz, runs the image's HEALTHCHECK command, sends tests/fixtures/events/complete.json
#     with the host's `fhir-bulk-receiver send` (200 accepted, then 200 duplicate; a wrong token 401),
#     checks the journal files belong to uid 10001 with modes 0700/0600, stops the server with
#     SIGTERM (by its pid) and expects exit 0; then again over HTTPS with a test certificate and key
#     (the compose file's TLS variant): /healthz, the HEALTHCHECK, the event again is a duplicate
#  6. image size < 150 MB, no compiler in the image; removes the working container; PASS summary
#
# Environment: FBR_VERIFICATION_TOKEN (default: a random one), IMAGE (default fhir-bulk-receiver:test),
# KEEP_LOGS=1 keeps the log directory.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

IMAGE=${IMAGE:-fhir-bulk-receiver:test}
BASE=docker.io/library/debian:bookworm-slim
MAX_BYTES=150000000 # 150 MB
FBR_UID=10001
BIN=$top/build/release/server/fhir-bulk-receiver
FIXTURE=$top/tests/fixtures/events/complete.json
token=${FBR_VERIFICATION_TOKEN:-docker-test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}

logs=$(mktemp -d "${TMPDIR:-/tmp}/fbr-docker-test.XXXXXX")
c=""
mnt=""
server_pid=""
runner_pid=""
SECONDS=0

say() { printf 'docker-test: %s\n' "$*"; }
fail() {
  printf 'docker-test: FAIL: %s\n' "$*" >&2
  printf 'docker-test: logs kept in %s\n' "$logs" >&2
  KEEP_LOGS=1
  exit 1
}
cleanup() {
  local rc=$?
  # Only what this script started: the server by its recorded pid, then its buildah runner.
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then kill -KILL "$runner_pid" 2>/dev/null || true; fi
  if [ -n "$mnt" ]; then buildah umount "$c" >/dev/null 2>&1 || true; fi
  if [ -n "$c" ]; then buildah rm "$c" >/dev/null 2>&1 || true; fi
  if [ "${KEEP_LOGS:-0}" != 1 ]; then rm -rf "$logs"; fi
  exit $rc
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

run() { buildah run --isolation chroot --network host "$@"; }

# --- 1. base images -----------------------------------------------------------------------------
if command -v podman >/dev/null && podman image exists "$BASE" 2>/dev/null; then
  say "base image present: $BASE"
else
  maker=$top/../shared/tools/container-base.sh
  if [ ! -x "$maker" ]; then
    cat >&2 <<EOF
docker-test: FAIL: the base image $BASE is missing and ../shared/tools/container-base.sh is not here.
  It needs buildah and podman (apt-get install buildah podman) and local images named
  docker.io/library/debian:bookworm and docker.io/library/debian:bookworm-slim: pull them from a registry
  (podman pull docker.io/library/debian:bookworm-slim; podman pull docker.io/library/debian:bookworm), or
  make them without one with debootstrap (apt-get install debootstrap):
    debootstrap --variant=minbase bookworm /tmp/rootfs
    tar -C /tmp/rootfs -c . | podman import - docker.io/library/debian:bookworm-slim
    podman tag docker.io/library/debian:bookworm-slim docker.io/library/debian:bookworm
  then run make docker-test again.
EOF
    exit 1
  fi
  say "making the base images with ../shared/tools/container-base.sh (debootstrap; minutes)"
  # apt may be busy with another install on this machine: retry a few times.
  for try in 1 2 3 4 5 6; do
    if "$maker" >"$logs/container-base.log" 2>&1; then break; fi
    ((try < 6)) || { cat "$logs/container-base.log" >&2; fail "container-base.sh failed"; }
    say "container-base.sh failed (try $try), retrying in 20 s: $(tail -1 "$logs/container-base.log")"
    sleep 20
  done
  podman image exists "$BASE" || fail "container-base.sh ran but $BASE is still missing"
fi

# --- 2. build the image -------------------------------------------------------------------------
say "building $IMAGE with buildah (build stage: deps, release build, unit tests; minutes)"
if ! buildah bud --format docker --isolation chroot --network host --layers -t "$IMAGE" . \
  >"$logs/build.log" 2>&1; then
  tail -40 "$logs/build.log" >&2
  fail "buildah bud failed (full log: $logs/build.log)"
fi
unit_summary=$(grep -E '^[0-9]+% tests passed, 0 tests failed out of [1-9]' "$logs/build.log" | tail -1 || true)
[ -n "$unit_summary" ] || fail "no ctest summary for the unit tests in the build log"
say "built $IMAGE in ${SECONDS} s; unit tests in the build stage: $unit_summary"

# --- 3. the image's configuration ----------------------------------------------------------------
cfg() { buildah inspect --type image --format "$1" "$IMAGE"; }
user=$(cfg '{{.Docker.Config.User}}')
entry=$(cfg '{{range .Docker.Config.Entrypoint}}{{.}} {{end}}')
cmd=$(cfg '{{range .Docker.Config.Cmd}}{{.}} {{end}}')
health=$(cfg '{{if .Docker.Config.Healthcheck}}{{range .Docker.Config.Healthcheck.Test}}{{.}} {{end}}{{end}}')
# shellcheck disable=SC2016 # Go templates, not shell
ports=$(cfg '{{range $p, $v := .Docker.Config.ExposedPorts}}{{$p}} {{end}}')
# shellcheck disable=SC2016
volumes=$(cfg '{{range $v, $x := .Docker.Config.Volumes}}{{$v}} {{end}}')
env=$(cfg '{{range .Docker.Config.Env}}{{.}} {{end}}')
[ "$user" = "fbr:fbr" ] || [ "$user" = "$FBR_UID" ] || fail "image USER is '$user', want fbr"
[ "$entry" = "fhir-bulk-receiver " ] || fail "ENTRYPOINT is '$entry'"
[ "$cmd" = "serve " ] || fail "CMD is '$cmd'"
[[ $health == CMD* ]] || fail "no HEALTHCHECK in the image (built without --format docker?)"
[[ " $ports" == *" 8080/tcp "* ]] || fail "EXPOSE is '$ports', want 8080/tcp"
[[ " $volumes" == *" /data "* ]] || fail "VOLUME is '$volumes', want /data"
[[ " $env" == *" FBR_LISTEN=0.0.0.0:8080 "* ]] || fail "FBR_LISTEN is not 0.0.0.0:8080 in '$env'"
[[ " $env" == *" FBR_DATA_DIR=/data "* ]] || fail "FBR_DATA_DIR is not /data in '$env'"
health_cmd=${health#CMD }
health_cmd=${health_cmd#CMD-SHELL }
health_cmd=${health_cmd% }
say "image config: user $user, entrypoint [${entry% }] cmd [${cmd% }], healthcheck '$health_cmd', expose ${ports% }, volume ${volumes% }"

# --- 4. the binary inside a working container ---------------------------------------------------
c=$(buildah from "$IMAGE")
uid=$(run "$c" -- id -u)
[ "$uid" = "$FBR_UID" ] || fail "buildah run runs as uid $uid, want $FBR_UID (image USER)"
version=$(run "$c" -- fhir-bulk-receiver --version) || fail "fhir-bulk-receiver --version failed in the image"
say "in the image, as uid $uid: $version"
if run "$c" -- sh -c 'ldd /usr/local/bin/fhir-bulk-receiver' | grep -q 'not found'; then
  fail "a shared library is missing in the image: $(run "$c" -- ldd /usr/local/bin/fhir-bulk-receiver | grep 'not found')"
fi
buildah copy "$c" docker/config.json /etc/fhir-bulk-receiver/config.json >/dev/null
run --env FBR_VERIFICATION_TOKEN="$token" --env FBR_CONFIG=/etc/fhir-bulk-receiver/config.json "$c" -- \
  fhir-bulk-receiver check-config >"$logs/check-config.out" 2>&1 ||
  { cat "$logs/check-config.out" >&2; fail "check-config rejects docker/config.json in the image"; }
grep -q '"data_dir": *"/data"' "$logs/check-config.out" || fail "check-config: data_dir is not /data"
! grep -qF "$token" "$logs/check-config.out" || fail "check-config printed the token"
say "check-config accepts docker/config.json (FBR_CONFIG), token redacted"
set +e
run "$c" -- fhir-bulk-receiver serve >"$logs/no-token.out" 2>&1
rc=$?
set -e
[ $rc = 2 ] || { cat "$logs/no-token.out" >&2; fail "serve without a token exited $rc, want 2"; }
say "serve without FBR_VERIFICATION_TOKEN refuses to start (exit 2): $(grep -m1 -i token "$logs/no-token.out")"

# --- 5. serve, send, journal ---------------------------------------------------------------------
# The host's release binary sends the webhooks, as a user would from outside the container.
if [ ! -x "$BIN" ]; then
  say "building the host's release binary for 'send' (release preset, target fhir-bulk-receiver; minutes)"
  { scripts/install-deps.sh && cmake --preset release && cmake --build --preset release --target fhir-bulk-receiver; } \
    >"$logs/host-build.log" 2>&1 || { tail -30 "$logs/host-build.log" >&2; fail "the host's release build failed"; }
fi

descendants() {
  local p
  for p in $(pgrep -P "$1" || true); do
    echo "$p"
    descendants "$p"
  done
}
# start_serve LOG [--env K=V]...: `serve` in the working container, in the background, on
# 127.0.0.1:<a free port> (port 0: the kernel picks it, the service logs it). Sets runner_pid (buildah),
# server_pid (the service itself, a descendant of buildah) and port.
start_serve() {
  local log=$1
  shift
  server_pid=""
  port=""
  run --env FBR_VERIFICATION_TOKEN="$token" --env FBR_LISTEN=127.0.0.1:0 --env FBR_LOG_FORMAT=text "$@" \
    "$c" -- fhir-bulk-receiver serve >"$log" 2>&1 &
  runner_pid=$!
  for _ in $(seq 1 150); do
    if [ -z "$server_pid" ]; then
      for p in $(descendants "$runner_pid"); do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "fhir-bulk-recei" ]; then server_pid=$p; fi
      done
    fi
    port=$(sed -n 's/.*listening.* port=\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
    if [ -n "$port" ] && [ -n "$server_pid" ]; then break; fi
    kill -0 "$runner_pid" 2>/dev/null || { cat "$log" >&2; fail "serve exited at start"; }
    sleep 0.2
  done
  [ -n "$port" ] || { cat "$log" >&2; fail "serve did not log its port within 30 s"; }
  [ -n "$server_pid" ] || fail "cannot find the server process under buildah run (pid $runner_pid)"
  server_uid=$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")
  [ "$server_uid" = "$FBR_UID" ] || fail "the server runs as uid $server_uid, want $FBR_UID"
}
# stop_serve LOG: SIGTERM to the service (by its pid); it must exit 0 and log "stopped".
stop_serve() {
  local rc
  kill -TERM "$server_pid"
  set +e
  wait "$runner_pid"
  rc=$?
  set -e
  runner_pid=""
  server_pid=""
  [ $rc = 0 ] || { tail -5 "$1" >&2; fail "serve exited $rc after SIGTERM, want 0"; }
  grep -q 'stopped' "$1" || fail "serve did not log 'stopped'"
}
# wait_healthz URL [curl options]
wait_healthz() {
  local u=$1
  shift
  for _ in $(seq 1 50); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$u/healthz")" = 200 ]; then return 0; fi
    sleep 0.2
  done
  fail "GET $u/healthz never answered 200"
}

admin_token=admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
start_serve "$logs/serve.log" --env FBR_ADMIN_LISTEN=127.0.0.1:0 --env FBR_ADMIN_TOKENS="$admin_token"
admin_port=$(sed -n 's/.*listening.* admin=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$logs/serve.log" | head -1)
[ -n "$admin_port" ] || { cat "$logs/serve.log" >&2; fail "serve did not log admin=127.0.0.1:<port>"; }
say "serve: pid $server_pid, uid $server_uid, listening on 127.0.0.1:$port, console on 127.0.0.1:$admin_port"
url=http://127.0.0.1:$port
http_port=$port
wait_healthz "$url"
# shellcheck disable=SC2086 # the HEALTHCHECK's words
run --env FBR_LISTEN="127.0.0.1:$port" "$c" -- $health_cmd >"$logs/healthcheck.out" 2>&1 ||
  { cat "$logs/healthcheck.out" >&2; fail "the image's HEALTHCHECK ($health_cmd) fails against a serving container"; }
say "GET /healthz: 200; the image's HEALTHCHECK ($health_cmd) passes"

"$BIN" send --url "$url/webhook" --token "$token" "$FIXTURE" >"$logs/send1.out" 2>&1 || true
status=$(head -1 "$logs/send1.out")
body=$(sed -n 2p "$logs/send1.out")
[ "$status" = 200 ] || { cat "$logs/send1.out" >&2; fail "send answered '$status', want 200"; }
[[ $body == *'"status":"accepted"'*'"duplicate":false'* ]] || fail "send body: $body"
log_id=$(sed -n 's/.*"logId":"\([^"]*\)".*/\1/p' <<<"$body")
say "send complete.json from the host: $status $body"
"$BIN" send --url "$url/webhook" --token "$token" "$FIXTURE" >"$logs/send2.out" 2>&1 || true
if [ "$(head -1 "$logs/send2.out")" != 200 ] || ! grep -q '"duplicate":true' "$logs/send2.out"; then
  cat "$logs/send2.out" >&2
  fail "the second send is not a 200 duplicate"
fi
"$BIN" send --url "$url/webhook" --token "wrong-$token" "$FIXTURE" >"$logs/send3.out" 2>&1 || true
[ "$(head -1 "$logs/send3.out")" = 401 ] || { cat "$logs/send3.out" >&2; fail "a wrong token is not a 401"; }
say "again: 200 duplicate:true; with a wrong token: 401"

# The event console through the admin port (compose publishes it on the host's loopback only).
grep -q '"127.0.0.1:8081:8081"' docker/compose.yaml || fail "compose.yaml does not publish the admin port on 127.0.0.1 only"
admin=http://127.0.0.1:$admin_port
page=$(curl -s --max-time 5 "$admin/") || fail "GET $admin/ failed"
[[ $page == *'<html'* ]] || fail "GET / on the admin port is not the console page: ${page:0:200}"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$admin/api/events")
[ "$code" = 401 ] || fail "GET /api/events without the admin token answered $code, want 401"
listed=$(curl -s --max-time 5 -H "Authorization: Bearer $admin_token" "$admin/api/events?q=$log_id")
[[ $listed == *"\"log_id\":\"$log_id\""* ]] || fail "GET /api/events?q=$log_id does not list it: ${listed:0:300}"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/metrics")" = 404 ] ||
  fail "/metrics is still on the webhook port with an admin listener"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $admin_token" "$admin/metrics")" = 200 ] ||
  fail "/metrics is not on the admin port"
say "console: GET / is the page, /api/events 401 without the token and lists $log_id with it; /metrics moved to the admin port"

# The journal, through the server's own root (/proc/PID/root is the container's file system as the
# server sees it, the /data volume included).
data=/proc/$server_pid/root/data
journal=$data/journal.sqlite
[ -f "$journal" ] || fail "no journal at /data/journal.sqlite in the container"
check_owner() { # path uid mode
  local got
  got=$(stat -c '%u %a' "$1")
  [ "$got" = "$2 $3" ] || fail "$(basename "$1"): owner and mode '$got', want '$2 $3'"
}
check_owner "$data" "$FBR_UID" 700
check_owner "$journal" "$FBR_UID" 600
others=$(find "$data" -mindepth 1 \( ! -uid "$FBR_UID" -o -perm /077 \) -printf '%P ' 2>/dev/null)
[ -z "$others" ] || fail "files in /data not owned by uid $FBR_UID or readable by others: $others"
say "journal: /data $(stat -c '%u %a' "$data"), /data/journal.sqlite $(stat -c '%u %a, %s bytes' "$journal"); all of /data: $(find "$data" -mindepth 1 -printf '%P ' | sed 's/ $//')"

stop_serve "$logs/serve.log"
say "SIGTERM: serve stopped, exit 0"

# Where /data lives after the run: a VOLUME, so buildah keeps it outside the root file system, in the
# working container's own directory (<graph root>/overlay-containers/<id>/userdata/buildah-volumes/).
# The next `buildah run` in the same container mounts it again: the CLI reads the journal there.
mnt=$(buildah mount "$c")
volume=""
if [ -f "$mnt/data/journal.sqlite" ]; then
  volume=$mnt/data
else
  graph=$(buildah info --format '{{.store.GraphRoot}}')
  cid=$(buildah inspect --format '{{.ContainerID}}' "$c")
  for v in "$graph/overlay-containers/$cid"/userdata/buildah-volumes/*; do
    if [ -f "$v/journal.sqlite" ]; then volume=$v; fi
  done
fi
[ -n "$volume" ] || fail "after the stop, no journal.sqlite in the container's /data or its buildah volumes"
check_owner "$volume" "$FBR_UID" 700
check_owner "$volume/journal.sqlite" "$FBR_UID" 600
run --env FBR_VERIFICATION_TOKEN="$token" "$c" -- fhir-bulk-receiver events --log-id "$log_id" \
  >"$logs/events.out" 2>&1 || { cat "$logs/events.out" >&2; fail "fhir-bulk-receiver events failed"; }
grep -q "$log_id" "$logs/events.out" || { cat "$logs/events.out" >&2; fail "events does not list $log_id"; }
say "after the stop: /data is the buildah volume $volume ($(stat -c '%u %a' "$volume"), journal.sqlite $(stat -c '%u %a' "$volume/journal.sqlite")); 'events' in the container lists $log_id"

# --- TLS: the compose file's TLS variant (certificate and key mounted read-only for uid 10001) -------
tls_dir=$logs/tls
mkdir -p "$tls_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" \
  >"$logs/openssl.out" 2>&1 || { cat "$logs/openssl.out" >&2; fail "openssl could not make a test certificate"; }
chmod 0400 "$tls_dir/key.pem"
chmod 0444 "$tls_dir/cert.pem"
buildah copy --chown "$FBR_UID:$FBR_UID" "$c" "$tls_dir/cert.pem" "$tls_dir/key.pem" /run/tls/ >/dev/null
start_serve "$logs/serve-tls.log" --env FBR_TLS_CERT_FILE=/run/tls/cert.pem --env FBR_TLS_KEY_FILE=/run/tls/key.pem
turl=https://127.0.0.1:$port
wait_healthz "$turl" --cacert "$tls_dir/cert.pem"
# shellcheck disable=SC2086
run --env FBR_LISTEN="127.0.0.1:$port" --env FBR_TLS_CERT_FILE=/run/tls/cert.pem "$c" -- $health_cmd \
  >"$logs/healthcheck-tls.out" 2>&1 ||
  { cat "$logs/healthcheck-tls.out" >&2; fail "the image's HEALTHCHECK fails against a container serving HTTPS"; }
tls_answer=$(curl -sS --max-time 10 --cacert "$tls_dir/cert.pem" -w ' %{http_code}' -H "verification-token: $token" \
  -H 'Content-Type: application/json' --data-binary "@$FIXTURE" "$turl/webhook") || fail "POST over HTTPS failed"
[[ $tls_answer == *'"duplicate":true'*' 200' ]] ||
  fail "POST over HTTPS after a restart: '$tls_answer', want 200 duplicate:true (the journal in the volume)"
stop_serve "$logs/serve-tls.log"
say "HTTPS (FBR_TLS_CERT_FILE/KEY_FILE): /healthz 200, HEALTHCHECK passes over TLS, the event again: 200 duplicate:true; SIGTERM, exit 0"

# --- 6. size and contents -------------------------------------------------------------------------
compilers=""
for f in usr/bin/gcc usr/bin/cc usr/bin/c++ usr/bin/g++ usr/bin/cpp usr/bin/clang usr/bin/clang++ \
  usr/bin/x86_64-linux-gnu-gcc-12 usr/bin/x86_64-linux-gnu-g++-12 usr/bin/ld usr/bin/as; do
  if [ -e "$mnt/$f" ] || [ -L "$mnt/$f" ]; then compilers+="/$f "; fi
done
if compgen -G "$mnt/usr/lib/gcc/*/*/cc1*" >/dev/null; then compilers+="cc1 "; fi
[ -z "$compilers" ] || fail "the runtime image contains a compiler or toolchain: $compilers"
buildah umount "$c" >/dev/null
mnt=""
buildah rm "$c" >/dev/null
c=""

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1000000 }')
((size < MAX_BYTES)) || fail "the image is $size_mb MB ($size bytes), over 150 MB"
say "image size: $size_mb MB ($size bytes; limit 150 MB); no compiler (gcc, cc, c++, g++, cpp, clang, ld, as, cc1)"

echo
echo "docker-test: PASS in ${SECONDS} s"
echo "  image        $IMAGE, $size_mb MB, runs as uid $FBR_UID ($user)"
echo "  build stage  $unit_summary"
echo "  --version    $version"
echo "  serve        127.0.0.1:$http_port, /healthz 200, HEALTHCHECK ok, complete.json 200 accepted then duplicate, wrong token 401"
echo "  journal      /data/journal.sqlite, uid $FBR_UID, 0600 (dir 0700)"
echo "  stop         SIGTERM, exit 0"
echo "  https        certificate and key mounted, /healthz and HEALTHCHECK over TLS, journal kept across restarts"
