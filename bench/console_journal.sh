#!/usr/bin/env bash
# A SQLite journal of COUNT events for the console benchmark (bench/console.sh), made in seconds
# by the sqlite3 CLI with a recursive CTE rather than through the webhook:
#
#   bench/console_journal.sh DATA_DIR [COUNT]   (COUNT 1,000,000 unless given)
#
# The schema is the one server/journal/sqlite/schema.cpp creates (its tables and search indexes,
# read from its source, so the two cannot drift), stamped with its format (PRAGMA user_version), so
# the server opens the file as it is.
# Every event is one of the fixtures with its own Log ID and AttemptID spliced in, one attempt each
# (in its events row, as format 2 keeps a first attempt), received 2 s apart and ending now; one in
# ten is a 202, one in three has Test false. Two
# deliveries each: `files` done, `download` done, or dead after 10 attempts for one event in 100
# (the dead-letter filter has something to find). None is pending or failed, so the dispatcher of
# the server started on it has nothing to do while the bench measures.
#
# The key of event i (1-based) is key_of i: the bench asks for one in the middle.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

key_of() { printf 'c0de0000-0000-4000-8000-%012x' "$1"; }
[ "${1:-}" = --key-of ] && {
  key_of "$2"
  exit 0
}

DATA_DIR=${1:?usage: console_journal.sh DATA_DIR [COUNT]}
COUNT=${2:-1000000}
FILE=$DATA_DIR/journal.sqlite
FIXTURES=$ROOT/tests/fixtures/events
[ -e "$FILE" ] && {
  echo "console_journal: $FILE exists" >&2
  exit 1
}
mkdir -p "$DATA_DIR"
chmod 700 "$DATA_DIR"

SOURCE=$ROOT/server/journal/sqlite/schema.cpp
schema_part() { sed -n "/$1 = R\"sql(/,/)sql\"/p" "$SOURCE" | sed '1d;$d'; }
SCHEMA="$(schema_part kTables)
$(schema_part kSearch)"
FORMAT=$(sed -n 's/.*constexpr int kFormat = \([0-9]*\);.*/\1/p' "$ROOT/server/journal/sqlite/schema.hpp")
[[ $SCHEMA == *"CREATE TABLE IF NOT EXISTS events"* && $SCHEMA == *events_attempt_id* && -n $FORMAT ]] || {
  echo "console_journal: no schema or format found in $SOURCE and schema.hpp" >&2
  exit 1
}
# The fixtures' own IDs (Meta.Logs[0]), replaced per event.
fixture_id() { sed -n '/"Logs"/,/]/p' "$FIXTURES/$1" | sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p"; }
DONE_ID=$(fixture_id complete.json ID)
DONE_AID=$(fixture_id complete.json AttemptID)
WAIT_ID=$(fixture_id in-progress.json ID)
WAIT_AID=$(fixture_id in-progress.json AttemptID)
for id in "$DONE_ID" "$DONE_AID" "$WAIT_ID" "$WAIT_AID"; do
  [[ $id =~ ^[0-9a-f-]{36}$ ]] || {
    echo "console_journal: the fixtures' Log IDs were not found" >&2
    exit 1
  }
done
START=$(($(date +%s) - 2 * COUNT))

sqlite3 -bail "$FILE" >/dev/null <<EOF
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
PRAGMA cache_size=-262144;
PRAGMA temp_store=MEMORY;
$SCHEMA
PRAGMA user_version = $FORMAT;
BEGIN;
CREATE TEMP TABLE fixture AS
  SELECT json(readfile('$FIXTURES/complete.json')) AS done,
         json(readfile('$FIXTURES/in-progress.json')) AS waiting;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $COUNT),
e AS (
  SELECT i,
         printf('c0de0000-0000-4000-8000-%012x', i) AS key,
         printf('a77e0000-0000-4000-8000-%012x', i) AS attempt_id,
         i % 10 = 0 AS in_progress,
         i % 3 = 0 AS live,
         strftime('%Y-%m-%dT%H:%M:%fZ', $START + 2 * i, 'unixepoch') AS received_at
  FROM n)
INSERT INTO events(key, log_id, attempt_id, status, test, output_count, received_at, body,
                   remote_addr, request_id)
SELECT key, key, attempt_id,
       CASE WHEN in_progress THEN 202 ELSE 200 END,
       CASE WHEN live THEN 0 ELSE 1 END,
       CASE WHEN in_progress THEN 0 ELSE 2 END,
       received_at,
       CAST(replace(CASE WHEN in_progress
                      THEN replace(replace(fixture.waiting, '$WAIT_ID', key), '$WAIT_AID', attempt_id)
                      ELSE replace(replace(fixture.done, '$DONE_ID', key), '$DONE_AID', attempt_id)
                    END,
                    '"Test":true', CASE WHEN live THEN '"Test":false' ELSE '"Test":true' END)
            AS BLOB),
       '10.0.0.7', printf('5eed0000-0000-4000-8000-%012x', i)
FROM e, fixture;
INSERT INTO deliveries(event_key, handler, state, attempts, next_attempt_at, last_error, updated_at)
  SELECT key, 'files', 'done', 1, 0, '', received_at FROM events ORDER BY rowid;
INSERT INTO deliveries(event_key, handler, state, attempts, next_attempt_at, last_error, updated_at)
  SELECT key, 'download', CASE WHEN rowid % 100 = 0 THEN 'dead' ELSE 'done' END,
         CASE WHEN rowid % 100 = 0 THEN 10 ELSE 1 END, 0,
         CASE WHEN rowid % 100 = 0
           THEN 'Patient.1.ndjson (https://api.redoxengine.com/fhir/R4/example-destination/Development/BulkStatus/e4b4a01a/patient-file-001.ndjson.gz): HTTP 404'
           ELSE '' END,
         received_at
  FROM events ORDER BY rowid;
COMMIT;
EOF
chmod 600 "$FILE"
