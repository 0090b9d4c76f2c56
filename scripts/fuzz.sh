#!/usr/bin/env bash
# Runs each libFuzzer target for a while (default 60 s each), growing its corpus under build/fuzz/.
# A crash stops with its input saved under build/fuzz/artifacts/<target>/: fix it, then copy the
# input to tests/fuzz/regressions/<target>/ so every `make test` replays it.
#   usage: scripts/fuzz.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(parse_event config http_request)
status=0
for t in "${targets[@]}"; do
  corpus=build/fuzz/corpus/$t
  artifacts=build/fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  log=build/fuzz/$t.log
  echo "fuzz $t for ${seconds}s ..."
  if build/fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" tests/fuzz/corpus/"$t" >"$log" 2>&1; then
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    echo "fuzz $t: ok, $runs executions, corpus $(ls "$corpus" | wc -l) inputs"
  else
    echo "fuzz $t: FAILED, see $log and $artifacts/" >&2
    grep -m5 -E 'ERROR|SUMMARY|Test unit written' "$log" >&2 || true
    status=1
  fi
done
exit $status
