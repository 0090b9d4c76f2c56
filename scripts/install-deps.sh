#!/usr/bin/env bash
# Installs the Debian 12 packages that the build, the tests and `make run` need; does nothing when they
# are all present (idempotent, and quick, so `make run` and `make test` can always call it).
#   usage: scripts/install-deps.sh [fuzz]   (fuzz: also clang and libFuzzer, for `make fuzz`)
set -euo pipefail
packages=(
  # toolchain
  g++ cmake ninja-build pkg-config make git
  # libraries (see DESIGN.md: well-kept libraries, all from Debian)
  libboost1.81-dev rapidjson-dev libspdlog-dev libfmt-dev doctest-dev libsqlite3-dev libssl-dev
  libcurl4-openssl-dev zlib1g-dev libcli11-dev libnats-dev libcjose-dev libjansson-dev
  # the download handler's stream verification (simdjson) and inflate (ISA-L igzip)
  libsimdjson-dev libisal-dev
  # the service's allocator (jemalloc: fewer instructions per allocation than glibc's malloc)
  libjemalloc-dev
  # tools the tests and operations use (nginx: the download handler's tests serve exports with it)
  sqlite3 openssl curl ca-certificates util-linux procps nginx gzip nats-server haproxy strace
  # the console's browser tests (tests/browser/): Debian's Chromium, driven by puppeteer-core
  chromium
)
# Node and npm for those tests: Debian's (nodejs 18, npm 9) unless a node and an npm are already
# on PATH (e.g. NodeSource's nodejs, which brings its own npm and conflicts with Debian's npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libclang-rt-14-dev)
fi
install_promtool() {
  # The tests check /metrics with Prometheus's own promtool. Debian ships it inside the
  # `prometheus` package, whose install would also start a Prometheus server: take just the tool.
  command -v promtool >/dev/null && return 0
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) &&
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" &&
    install -m 0755 "$tmp/root/usr/bin/promtool" /usr/local/bin/promtool ||
    echo "install-deps: promtool unavailable; the /metrics test uses its own format check" >&2
  rm -rf "$tmp"
}
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  install_promtool
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_promtool
