#include "server/journal/sqlite/events.hpp"

#include <algorithm>

#include "server/journal/sqlite/database.hpp"
#include "server/journal/sqlite/journal.hpp"
#include "server/journal/sqlite/schema.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {
namespace {

/// Opens an existing journal for the CLI; error message or nullopt.
std::optional<std::string> open_existing(const std::filesystem::path& data_dir, bool read_only,
                                         sqlite::Database& db) {
  const auto file = SqliteJournal::file_in(data_dir);
  if (!std::filesystem::exists(file)) return "no journal at " + file.string();
  if (auto e = db.open(file.string(), read_only)) {
    return "cannot open journal " + file.string() + ": " + *e;
  }
  sqlite3_busy_timeout(db.handle(), 10000);
  if (sqlite::format_of(db) != sqlite::kFormat) {
    // A journal an older version wrote: brought up to this version's format first (what the
    // service does at its start), on a connection that may write.
    sqlite::Database writer;
    if (auto e = writer.open(file.string(), false)) {
      return "cannot open journal " + file.string() + ": " + *e;
    }
    sqlite3_busy_timeout(writer.handle(), 10000);
    if (auto e = sqlite::ensure_schema(writer)) return "journal " + file.string() + ": " + *e;
  }
  return std::nullopt;
}

}  // namespace

std::vector<EventRow> list_events(const std::filesystem::path& data_dir, const std::string& log_id,
                                  int limit, std::string& error) {
  std::vector<EventRow> rows;
  sqlite::Database db;
  if (auto e = open_existing(data_dir, true, db)) {
    error = *e;
    return rows;
  }
  sqlite::Statement events;
  sqlite::Statement attempts;
  sqlite::Statement deliveries;
  for (auto [statement, sql] :
       {std::pair{&events,
                  "SELECT key, log_id, received_at, status, output_count FROM events "
                  "WHERE (?1 = '' OR key = ?1) "
                  "ORDER BY received_at DESC, rowid DESC LIMIT ?2"},
        std::pair{&attempts,
                  "SELECT attempt_id, received_at, remote_addr, request_id, duplicate "
                  "FROM event_attempts WHERE event_key = ? ORDER BY seq"},
        std::pair{&deliveries,
                  "SELECT handler, state, last_error, updated_at, attempts, next_attempt_at "
                  "FROM deliveries WHERE event_key = ? ORDER BY handler"}}) {
    if (auto e = statement->prepare(db, sql)) {
      error = *e;
      return rows;
    }
  }
  events.bind(1, log_id).bind(2, std::int64_t{limit});
  int rc;
  while ((rc = events.step()) == SQLITE_ROW) {
    EventRow row{events.text(0),
                 events.text(1),
                 events.text(2),
                 static_cast<int>(events.integer(3)),
                 events.integer(4),
                 {},
                 {}};
    attempts.bind(1, row.key);
    while (attempts.step() == SQLITE_ROW) {
      row.attempts.push_back({attempts.text(0), attempts.text(1), attempts.text(2),
                              attempts.text(3), attempts.integer(4) != 0});
    }
    attempts.reset();
    deliveries.bind(1, row.key);
    while (deliveries.step() == SQLITE_ROW) {
      row.deliveries.push_back({deliveries.text(0), deliveries.text(1), deliveries.text(2),
                                deliveries.text(3), static_cast<int>(deliveries.integer(4)),
                                deliveries.integer(5)});
    }
    deliveries.reset();
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) error = db.last_error();
  return rows;
}

std::vector<std::string> replay_deliveries(const std::filesystem::path& data_dir,
                                           const std::string& log_id, const std::string& handler,
                                           const std::vector<std::string>& configured,
                                           std::string& error) {
  std::vector<std::string> requeued;
  sqlite::Database db;
  if (auto e = open_existing(data_dir, false, db)) {
    error = *e;
    return requeued;
  }
  for (std::string_view pragma : {"PRAGMA synchronous=FULL", "BEGIN IMMEDIATE"}) {
    if (auto e = db.exec(pragma)) {
      error = *e;
      return requeued;
    }
  }
  auto fail = [&](std::string message) {
    error = std::move(message);
    (void)db.exec("ROLLBACK");
    requeued.clear();
    return requeued;
  };
  sqlite::Statement find;
  if (auto e = find.prepare(db, "SELECT key FROM events WHERE key = ?1")) {
    return fail(*e);
  }
  find.bind(1, log_id);
  std::vector<std::string> keys;
  while (find.step() == SQLITE_ROW)
    keys.push_back(find.text(0));
  if (keys.empty()) return fail("no event with Log ID " + log_id);
  const bool known = std::find(configured.begin(), configured.end(), handler) != configured.end();
  if (!handler.empty() && !known) return fail("no handler named " + handler + " in the config");

  sqlite::Statement insert;
  sqlite::Statement requeue;
  if (auto e = insert.prepare(db,
                              "INSERT OR IGNORE INTO deliveries(event_key, handler, state, "
                              "attempts, next_attempt_at, last_error, updated_at) "
                              "VALUES (?, ?, 'pending', 0, 0, '', ?)")) {
    return fail(*e);
  }
  if (auto e = requeue.prepare(db,
                               "UPDATE deliveries SET state = 'pending', attempts = 0, "
                               "next_attempt_at = 0, last_error = '', updated_at = ?1 "
                               "WHERE event_key = ?2 AND (?3 = '' OR handler = ?3) "
                               "RETURNING handler")) {
    return fail(*e);
  }
  const std::string now = utc_now_iso();
  for (const auto& key : keys) {
    if (!handler.empty()) {
      insert.bind(1, key).bind(2, handler).bind(3, now);
      if (insert.step() != SQLITE_DONE) return fail(db.last_error());
      insert.reset();
    }
    requeue.bind(1, now).bind(2, key).bind(3, handler);
    int rc;
    while ((rc = requeue.step()) == SQLITE_ROW)
      requeued.push_back(requeue.text(0));
    if (rc != SQLITE_DONE) return fail(db.last_error());
    requeue.reset();
  }
  if (auto e = db.exec("COMMIT")) return fail(*e);
  return requeued;
}

std::int64_t replay_state(const std::filesystem::path& data_dir, const std::string& state,
                          std::string& error) {
  if (state != "dead" && state != "failed") {
    error = "state: must be dead or failed";
    return 0;
  }
  // Failures of the journal itself start with "journal: " (the API's 503, not a 400).
  auto fail = [&error](const std::string& message) {
    error = "journal: " + message;
    return std::int64_t{0};
  };
  sqlite::Database db;
  if (auto e = open_existing(data_dir, false, db)) return fail(*e);
  if (auto e = db.exec("PRAGMA synchronous=FULL")) return fail(*e);
  // One statement is one transaction: all of them or none.
  sqlite::Statement requeue;
  if (auto e = requeue.prepare(db,
                               "UPDATE deliveries SET state = 'pending', attempts = 0, "
                               "next_attempt_at = 0, last_error = '', updated_at = ?1 "
                               "WHERE state = ?2")) {
    return fail(*e);
  }
  requeue.bind(1, utc_now_iso()).bind(2, state);
  if (requeue.step() != SQLITE_DONE) return fail(db.last_error());
  return db.changes();
}

}  // namespace fbr::server
