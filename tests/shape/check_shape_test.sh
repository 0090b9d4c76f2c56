#!/usr/bin/env bash
# The shape check fails when a rule breaks: scratch trees, each with one break (or none), against
# scripts/check-shape.sh. Exit 0 when every case gave the expected answer.
set -uo pipefail
check=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0

expect() {  # expect <exit code> <what> <file> <line>...
  local want=$1 what=$2 file=$3
  shift 3
  rm -rf "${scratch:?}"/*
  mkdir -p "$scratch/$(dirname "$file")"
  printf '%s\n' "$@" >"$scratch/$file"
  "$check" "$scratch" >"$scratch.out" 2>&1
  local got=$?
  if [[ $got != "$want" ]]; then
    echo "FAIL: $what: exit $got, wanted $want"
    cat "$scratch.out"
    failures=$((failures + 1))
  else
    echo "ok: $what (exit $got)"
  fi
  rm -f "$scratch.out"
}

expect 0 "a backend including the journal interface" server/journal/nats/a.cpp \
  '#include "server/journal/journal.hpp"' '#include "server/journal/nats/stream.hpp"'
expect 1 "nats including sqlite" server/journal/nats/a.cpp '#include "server/journal/sqlite/x.hpp"'
expect 1 "sqlite including nats" server/journal/sqlite/a.hpp '#include "server/journal/nats/x.hpp"'
expect 1 "http including a backend" server/http/a.cpp '#include "server/journal/sqlite/journal.hpp"'
expect 1 "core including the server" core/a.cpp '#include "server/support/log.hpp"'
expect 1 "config including the server" config/a.cpp '#include "server/app/commands.hpp"'
expect 1 "a handler including the journal" server/handlers/a.cpp '#include "server/journal/journal.hpp"'
expect 1 "support including a handler" server/support/a.cpp '#include "server/handlers/handler.hpp"'
expect 0 "system headers are not project headers" server/support/a.cpp '#include <string>' \
  '#include "sqlite3.h"'
long=()
for ((i = 0; i < 701; ++i)); do long+=("// line $i"); done
expect 1 "the app reaching into a backend" server/app/a.cpp '#include "server/journal/nats/journal.hpp"'
expect 0 "the app using the factory" server/app/a.cpp '#include "server/journal/backend.hpp"' \
  '#include "server/http/listener.hpp"'
expect 1 "a file over 700 lines" server/http/long.cpp "${long[@]}"
expect 0 "a file of 700 lines" server/http/long.cpp "${long[@]:1}"

((failures == 0))
