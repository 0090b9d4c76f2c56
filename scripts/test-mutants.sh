#!/usr/bin/env bash
# The mutation check (`make test-mutants`; minutes, not part of CI): for each mutant in
# scripts/mutants.txt (format described there), apply it to the source tree, rebuild in
# build/mutants (the release preset's flags: with ccache every untouched object is a cache hit),
# run the tests listed for it, restore the file, and print
#   KILLED by <test>   one of its tests failed: the guarantee is guarded
#   SURVIVED           every listed test passed (or skipped) with the guarantee broken
#   NOT APPLIED        its `find` text is not in the file exactly once: the list needs updating
#   BUILD FAILED       the mutated tree does not compile: the entry needs fixing
# Exits 0 only when every mutant was killed. First runs all listed tests on the unmutated tree: a
# test that fails there would "kill" every mutant, so the run stops.
#
# The file is restored on every exit path (also Ctrl-C). Options (environment):
#   MUTANTS=<regex>   only the mutants whose name matches (grep -E)
#   JOBS=<n>          build parallelism (default: nproc)
#   DRY_RUN=1         only check that every mutant applies (and restores), without building
#   PRESET=<preset>   the build's flags (default release); BUILD_DIR=<dir> (default build/mutants),
#                     e.g. PRESET=asan BUILD_DIR=build/asan to reuse an existing ASan build
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
list=scripts/mutants.txt
build=${BUILD_DIR:-build/mutants}
preset=${PRESET:-release}
jobs=${JOBS:-$(nproc)}
only=${MUTANTS:-}
work=$(mktemp -d)
current_file=""

restore() {
  if [[ -n "$current_file" && -f "$work/original" ]] &&
    ! cmp -s "$work/original" "$root/$current_file"; then
    cat "$work/original" >"$root/$current_file"  # same inode and mode; a new mtime: rebuilt next
  fi
  current_file=""
}
trap 'restore; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }

# ---- parse the list into parallel arrays
names=() files=() finds=() replaces=() tests=()
parse() {
  local name="" file="" find="" replace="" test="" have_replace=0 line key value
  flush() {
    if [[ -n "$name" ]]; then
      if [[ -z "$file" || -z "$find" || $have_replace -eq 0 || -z "$test" ]]; then
        say "test-mutants: entry '$name' lacks file, find, replace or tests" >&2
        exit 2
      fi
      if [[ -z "$only" ]] || grep -qE -- "$only" <<<"$name"; then
        names+=("$name") files+=("$file") finds+=("$find") replaces+=("$replace") tests+=("$test")
      fi
    fi
    name="" file="" find="" replace="" test="" have_replace=0
  }
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^# ]] && continue
    if [[ -z "$line" ]]; then
      flush
      continue
    fi
    key=${line%%:*}
    value=${line#*:}
    value=${value# }  # one space after the colon; the rest (indentation too) is the value
    case "$key" in
      name) name=$value ;;
      file) file=$value ;;
      find) find=$value ;;
      replace) replace=$value have_replace=1 ;;
      tests) test=$value ;;
      *) say "test-mutants: $list: unknown key '$key'" >&2; exit 2 ;;
    esac
  done <"$list"
  flush
}
parse
if [[ ${#names[@]} -eq 0 ]]; then
  say "test-mutants: no mutants selected" >&2
  exit 2
fi

# ---- apply one mutant: prints the number of occurrences found; replaces only when exactly one
apply() {  # file find replace
  FIND=$2 REPLACE=$3 perl -0777 -e '
    my $text = do { local $/; <STDIN> // "" };
    sub unescape { my $s = shift; $s =~ s/\\(n|\\)/$1 eq "n" ? "\n" : "\\"/ge; return $s }
    my ($find, $replace) = (unescape($ENV{FIND}), unescape($ENV{REPLACE}));
    my $count = () = $text =~ /\Q$find\E/g;
    $text =~ s/\Q$find\E/$replace/ if $count == 1;
    print STDOUT $text;
    print STDERR "$count\n";
  ' <"$1" 2>"$work/count" >"$work/mutated"
  local count
  count=$(cat "$work/count")
  if [[ "$count" == 1 ]]; then
    cat "$work/mutated" >"$1"
  fi
  printf '%s' "$count"
}

configure_and_build() {
  cmake --build "$build" -j "$jobs" --target fhir-bulk-receiver unit_tests integration_tests \
    >"$work/build.log" 2>&1
}

# ctest on the listed tests; sets `failed` to the first failing test's name (empty when all
# passed), `ran` to how many ran, `skipped` to how many skipped.
run_tests() {  # regex
  failed="" ran=0 skipped=0
  ctest --test-dir "$build" -R "$1" -j 2 --timeout 180 --stop-on-failure >"$work/ctest.log" 2>&1
  ran=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#' "$work/ctest.log")
  skipped=$(grep -cE '^[[:space:]]+[0-9]+ - .* \(Skipped\)$' "$work/ctest.log")
  failed=$(grep -E '^[[:space:]]+[0-9]+ - .* \((Failed|Timeout|SEGFAULT|Exception|Subprocess aborted|Child aborted|Not Run)\)$' \
    "$work/ctest.log" | head -1 | sed -E 's/^[[:space:]]+[0-9]+ - //; s/ \([^)]*\)$//')
  if [[ -z "$failed" ]] && grep -q 'tests failed out of' "$work/ctest.log" &&
    ! grep -q '100% tests passed' "$work/ctest.log"; then
    failed="(a test failed, see ctest output)"
  fi
}

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  status=0
  for i in "${!names[@]}"; do
    cp "${files[$i]}" "$work/original" 2>/dev/null || { say "NOT APPLIED  ${names[$i]}  (${files[$i]}: no such file)"; status=1; continue; }
    current_file=${files[$i]}
    count=$(apply "${files[$i]}" "${finds[$i]}" "${replaces[$i]}")
    restore
    if [[ "$count" == 1 ]]; then say "APPLIES      ${names[$i]}"; else say "NOT APPLIED  ${names[$i]}  (found $count times)"; status=1; fi
  done
  exit $status
fi

say "test-mutants: ${#names[@]} mutants; building $build ($preset flags)"
started=$(date +%s)
mkdir -p "$build"
if ! cmake --preset "$preset" -B "$build" >"$work/configure.log" 2>&1; then
  cat "$work/configure.log"
  exit 2
fi
if ! configure_and_build; then
  tail -40 "$work/build.log"
  say "test-mutants: the unmutated tree does not build"
  exit 2
fi

# ---- baseline: every listed test passes on the unmutated tree
union=$(IFS='|'; echo "${tests[*]}")
run_tests "$union"
if [[ -n "$failed" || $ran -eq 0 ]]; then
  tail -40 "$work/ctest.log"
  say "test-mutants: baseline: '$failed' fails on the unmutated tree (or no test matched): fix it first"
  exit 2
fi
if [[ $skipped -gt 0 ]]; then
  grep -E '\(Skipped\)$' "$work/ctest.log"
  say "test-mutants: baseline: $skipped listed test(s) skip here: their mutants cannot be judged"
  exit 2
fi
say "test-mutants: baseline: $ran listed tests pass on the unmutated tree"

killed=0 survived=0 not_applied=0 broken=0
for i in "${!names[@]}"; do
  name=${names[$i]} file=${files[$i]}
  t0=$(date +%s)
  if [[ ! -f "$file" ]]; then
    say "NOT APPLIED  $name  ($file: no such file)"
    not_applied=$((not_applied + 1))
    continue
  fi
  cp "$file" "$work/original"
  current_file=$file
  count=$(apply "$file" "${finds[$i]}" "${replaces[$i]}")
  if [[ "$count" != 1 ]]; then
    restore
    say "NOT APPLIED  $name  ($file: the find text occurs $count times, not once)"
    not_applied=$((not_applied + 1))
    continue
  fi
  if ! configure_and_build; then
    restore
    say "BUILD FAILED $name  (see below)"
    grep -E 'error' "$work/build.log" | head -5
    broken=$((broken + 1))
    continue
  fi
  run_tests "${tests[$i]}"
  restore
  secs=$(($(date +%s) - t0))
  if [[ $ran -eq 0 ]]; then
    say "SURVIVED     $name  (no test matches: ${tests[$i]})"
    survived=$((survived + 1))
  elif [[ -n "$failed" ]]; then
    say "KILLED by $failed  <- $name  (${secs}s)"
    killed=$((killed + 1))
  else
    say "SURVIVED     $name  ($ran tests passed, $skipped skipped: ${tests[$i]})"
    survived=$((survived + 1))
  fi
done

# Leave build/mutants matching the unmutated tree.
configure_and_build || true
total=${#names[@]}
say "test-mutants: $killed of $total killed, $survived survived, $not_applied not applied," \
  "$broken did not build ($(($(date +%s) - started)) s)"
[[ $killed -eq $total ]]
