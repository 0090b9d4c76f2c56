#!/usr/bin/env bash
# The shape of the code (ARCHITECTURE.md), checked on every `make test` (ctest "shape: ..."):
# - the layers' include rules: a file may include project headers only from the layers listed for
#   its folder; the two journal backends are siblings: nothing under server/journal/nats/ includes
#   server/journal/sqlite/ or the reverse;
# - no source file (core, config, server) over 700 lines.
# Prints each break and exits 1; exits 0 when there is none.
# Usage: scripts/check-shape.sh [ROOT]   (default: this repository; tests pass a scratch tree)
set -uo pipefail
cd "${1:-$(dirname "$0")/..}" || exit 2

# folder (prefix) | the project folders its files may include (prefixes, space-separated)
rules=(
  "core/|core/"
  "config/|core/ config/"
  "server/support/|core/ config/ server/support/"
  "server/handlers/|core/ config/ server/support/ server/handlers/"
  "server/journal/sqlite/|core/ config/ server/support/ server/handlers/handler.hpp server/journal/sqlite/ server/journal/*.hpp"
  "server/journal/nats/|core/ config/ server/support/ server/handlers/handler.hpp server/journal/nats/ server/journal/*.hpp"
  "server/journal/|core/ config/ server/support/ server/handlers/handler.hpp server/journal/"
  "server/http/|core/ config/ server/support/ server/http/ server/journal/*.hpp"
  "server/admin/|core/ config/ server/support/ server/handlers/ server/journal/*.hpp server/http/ server/admin/"
  "server/app/|core/ config/ server/support/ server/handlers/ server/journal/*.hpp server/http/ server/admin/ server/app/"
)

allowed() {  # allowed <include path> <patterns...>
  local include=$1 pattern
  shift
  for pattern in "$@"; do
    if [[ $pattern == *'*'* ]]; then
      # server/journal/*.hpp: a header directly in that folder, not in a subfolder
      local dir=${pattern%%\**}
      [[ $include == "$dir"* && ${include#"$dir"} != */* ]] && return 0
    elif [[ $pattern == */ ]]; then
      [[ $include == "$pattern"* ]] && return 0
    else
      [[ $include == "$pattern" ]] && return 0
    fi
  done
  return 1
}

max_lines=700
failures=0
while IFS= read -r file; do
  lines=$(wc -l <"$file")
  if ((lines > max_lines)); then
    echo "$file has $lines lines: no source file may have more than $max_lines (split it by job)"
    failures=$((failures + 1))
  fi
  rule=""
  for r in "${rules[@]}"; do
    prefix=${r%%|*}
    if [[ $file == "$prefix"* ]]; then rule=$r; break; fi
  done
  [[ -z $rule ]] && continue
  read -r -a patterns <<<"${rule#*|}"
  while IFS= read -r line; do
    include=${line#*\"}
    include=${include%%\"*}
    [[ $include == */* ]] || continue  # not a project header
    if ! allowed "$include" "${patterns[@]}"; then
      echo "$file includes $include: ${rule%%|*} may include only ${rule#*|}"
      failures=$((failures + 1))
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file")
done < <(find core config server -type f \( -name '*.cpp' -o -name '*.hpp' \) 2>/dev/null | sort)

if ((failures)); then
  echo "shape: $failures break(s) of the rules above (scripts/check-shape.sh, ARCHITECTURE.md)"
  exit 1
fi
echo "shape: every include follows the layer rules; no source file over $max_lines lines"
