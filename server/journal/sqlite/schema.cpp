#include "server/journal/sqlite/schema.hpp"

#include <string_view>

namespace fbr::server::sqlite {
namespace {

// Format 2's tables. IF NOT EXISTS throughout: a format-1 file already has some of them.
constexpr std::string_view kTables = R"sql(
CREATE TABLE IF NOT EXISTS events (
  key          TEXT PRIMARY KEY,
  log_id       TEXT NOT NULL,
  attempt_id   TEXT NOT NULL,
  status       INTEGER NOT NULL,
  test         INTEGER,
  output_count INTEGER NOT NULL,
  received_at  TEXT NOT NULL,
  body         BLOB NOT NULL,
  remote_addr  TEXT NOT NULL DEFAULT '',
  request_id   TEXT NOT NULL DEFAULT ''
);
-- The console's since/until (a narrow range is read from it rather than by a scan).
CREATE INDEX IF NOT EXISTS events_received_at ON events(received_at);
-- Repeated attempts only: the first one is in its events row.
CREATE TABLE IF NOT EXISTS attempts (
  id          INTEGER PRIMARY KEY,
  event_key   TEXT NOT NULL REFERENCES events(key),
  attempt_id  TEXT NOT NULL,
  received_at TEXT NOT NULL,
  remote_addr TEXT NOT NULL,
  request_id  TEXT NOT NULL,
  duplicate   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_event_key ON attempts(event_key);
-- The console's search (q): an attempt ID or a request ID finds its event.
CREATE INDEX IF NOT EXISTS attempts_attempt_id ON attempts(attempt_id);
CREATE INDEX IF NOT EXISTS attempts_request_id ON attempts(request_id);
CREATE TABLE IF NOT EXISTS deliveries (
  event_key       TEXT NOT NULL REFERENCES events(key),
  handler         TEXT NOT NULL,
  state           TEXT NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT NOT NULL DEFAULT '',
  updated_at      TEXT NOT NULL,
  PRIMARY KEY (event_key, handler)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt_at);
-- Every finished attempt of a delivery (the console's timeline).
CREATE TABLE IF NOT EXISTS delivery_attempts (
  id          INTEGER PRIMARY KEY,
  event_key   TEXT NOT NULL REFERENCES events(key),
  handler     TEXT NOT NULL,
  attempt     INTEGER NOT NULL,
  started_at  TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  outcome     TEXT NOT NULL,
  error       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON delivery_attempts(event_key, handler);
CREATE TABLE IF NOT EXISTS quarantine (
  id          INTEGER PRIMARY KEY,
  received_at TEXT NOT NULL,
  attempt_id  TEXT NOT NULL,
  remote_addr TEXT NOT NULL,
  request_id  TEXT NOT NULL,
  body        BLOB NOT NULL,
  errors      TEXT NOT NULL
);
-- Every attempt of an event, first (seq 0, from its events row) to last.
CREATE VIEW IF NOT EXISTS event_attempts(event_key, seq, attempt_id, received_at, remote_addr,
                                         request_id, duplicate) AS
  SELECT key, 0, attempt_id, received_at, remote_addr, request_id, 0 FROM events
  UNION ALL
  SELECT event_key, id, attempt_id, received_at, remote_addr, request_id, duplicate FROM attempts;
)sql";

// Format 1 → 2: the first attempt's remote address and request ID move into the events row (its
// attempt ID and time are there already), its attempts row goes; log_id's index goes (a Log ID
// is its event's key).
constexpr std::string_view kFrom1 = R"sql(
ALTER TABLE events ADD COLUMN remote_addr TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
UPDATE events SET (remote_addr, request_id) =
  (SELECT a.remote_addr, a.request_id FROM attempts a
   WHERE a.event_key = events.key AND a.duplicate = 0 ORDER BY a.id LIMIT 1)
  WHERE EXISTS (SELECT 1 FROM attempts a WHERE a.event_key = events.key AND a.duplicate = 0);
DELETE FROM attempts WHERE duplicate = 0;
DROP INDEX IF EXISTS events_log_id;
)sql";

// The search indexes of the events row's first attempt; after kFrom1 (they name its columns).
constexpr std::string_view kSearch = R"sql(
CREATE INDEX IF NOT EXISTS events_attempt_id ON events(attempt_id);
CREATE INDEX IF NOT EXISTS events_request_id ON events(request_id);
)sql";

bool has_table(Database& db, std::string_view name) {
  Statement s;
  if (s.prepare(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")) return false;
  s.bind(1, name);
  return s.step() == SQLITE_ROW;
}

}  // namespace

int format_of(Database& db) {
  Statement s;
  if (s.prepare(db, "PRAGMA user_version")) return 0;
  return s.step() == SQLITE_ROW ? static_cast<int>(s.integer(0)) : 0;
}

std::optional<std::string> ensure_schema(Database& db) {
  if (format_of(db) == kFormat) return std::nullopt;
  if (auto error = db.exec("BEGIN IMMEDIATE")) return error;
  auto fail = [&db](std::string error) {
    (void)db.exec("ROLLBACK");
    return std::optional<std::string>(std::move(error));
  };
  const int format = format_of(db);  // again, under the write lock: another opener may have won
  if (format > kFormat) {
    return fail("journal format " + std::to_string(format) + " is newer than this version's (" +
                std::to_string(kFormat) + "): use a newer fhir-bulk-receiver");
  }
  if (format < kFormat) {
    // Format 1 had no user_version: an events table without one is format 1.
    if (format == 0 && has_table(db, "events")) {
      if (auto error = db.exec(kFrom1))
        return fail("upgrading the journal from format 1: " + *error);
    }
    if (auto error = db.exec(kTables)) return fail(*error);
    if (auto error = db.exec(kSearch)) return fail(*error);
    if (auto error = db.exec("PRAGMA user_version = " + std::to_string(kFormat))) {
      return fail(*error);
    }
  }
  if (auto error = db.exec("COMMIT")) return fail(*error);
  return std::nullopt;
}

}  // namespace fbr::server::sqlite
