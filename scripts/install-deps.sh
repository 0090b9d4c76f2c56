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
  libcurl4-openssl-dev zlib1g-dev libcli11-dev
  # tools the tests and operations use (nginx: the download handler's tests serve exports with it)
  sqlite3 openssl curl ca-certificates util-linux procps nginx gzip
)
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
