#!/usr/bin/env bash
# Runs ctest with the given arguments and fails when any test was skipped: `make test` runs after
# scripts/install-deps.sh, so everything a test needs is here, and a skip means a guarantee went
# unchecked. FBR_ALLOW_SKIPS=1 lets a developer accept skips on a machine without, say, root.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ctest "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# ctest's summary lists them as "<tab> 12 - integration: name (Skipped)".
skipped=$(grep -E '^[[:space:]]+[0-9]+ - .* \(Skipped\)$' "$log" | sed -E 's/^[[:space:]]+//')
if [[ -n "$skipped" ]]; then
  count=$(printf '%s\n' "$skipped" | wc -l)
  if [[ "${FBR_ALLOW_SKIPS:-0}" == "1" ]]; then
    echo "ctest-no-skips: $count test(s) skipped, allowed by FBR_ALLOW_SKIPS=1:" >&2
    sed 's/^/  /' <<<"$skipped" >&2
  else
    echo "ctest-no-skips: FAILED: $count test(s) skipped (each printed SKIPPED: <why> above):" >&2
    sed 's/^/  /' <<<"$skipped" >&2
    echo "ctest-no-skips: install what they need (scripts/install-deps.sh) and run as root, or" \
      "set FBR_ALLOW_SKIPS=1 to accept skips on this machine." >&2
    [[ $status -eq 0 ]] && status=1
  fi
fi
exit "$status"
