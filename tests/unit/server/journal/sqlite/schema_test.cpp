// The journal's format 2 (sqlite/schema.hpp): a new event is one row, a journal of format 1 is
// upgraded in place with every attempt kept, and checkpoints run outside the commits.
#include "server/journal/sqlite/schema.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "server/journal/sqlite/events.hpp"
#include "server/journal/sqlite/journal.hpp"
#include "tests/unit/journal/console_support.hpp"

using namespace fbr::server;
namespace fs = std::filesystem;

namespace {

struct SchemaDir {
  fs::path path;
  SchemaDir() {
    std::string pattern = (fs::temp_directory_path() / "fbr-schema-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~SchemaDir() { fs::remove_all(path); }
};

// Format 1 as version 0.16 wrote it (the tables ingest touched), with one event sent twice.
constexpr std::string_view kFormat1 = R"sql(
CREATE TABLE events (key TEXT PRIMARY KEY, log_id TEXT NOT NULL, attempt_id TEXT NOT NULL,
  status INTEGER NOT NULL, test INTEGER, output_count INTEGER NOT NULL, received_at TEXT NOT NULL,
  body BLOB NOT NULL);
CREATE INDEX events_log_id ON events(log_id);
CREATE TABLE attempts (id INTEGER PRIMARY KEY, event_key TEXT NOT NULL REFERENCES events(key),
  attempt_id TEXT NOT NULL, received_at TEXT NOT NULL, remote_addr TEXT NOT NULL,
  request_id TEXT NOT NULL, duplicate INTEGER NOT NULL);
CREATE INDEX attempts_event_key ON attempts(event_key);
CREATE TABLE deliveries (event_key TEXT NOT NULL REFERENCES events(key), handler TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
  updated_at TEXT NOT NULL, PRIMARY KEY (event_key, handler));
INSERT INTO events VALUES ('log-1', 'log-1', 'att-1', 200, NULL, 1, '2026-01-01T00:00:00.000Z',
  '{"a":1}');
INSERT INTO attempts VALUES (1, 'log-1', 'att-1', '2026-01-01T00:00:00.000Z', '10.0.0.1:1',
  'req-1', 0);
INSERT INTO attempts VALUES (2, 'log-1', 'att-2', '2026-01-01T00:01:00.000Z', '10.0.0.2:2',
  'req-2', 1);
INSERT INTO deliveries VALUES ('log-1', 'file', 'done', 1, 0, '', '2026-01-01T00:00:01.000Z');
)sql";

CommitRequest request_for(const std::string& key, std::string body = "{}") {
  CommitRequest r;
  r.key = key;
  r.log_id = key;
  r.status = 200;
  r.output_count = 1;
  r.body = std::move(body);
  r.receipt = {"2026-02-01T00:00:00.000Z", "att-" + key, "10.0.0.9:9", "req-" + key};
  return r;
}

CommitResult commit_now(SqliteJournal& journal, CommitRequest request) {
  return fbr::test::journal_sync(
      [&](Journal::Callback done) { journal.commit(std::move(request), std::move(done)); });
}

/// Commits from a caller that lends its thread at once (commit_or_defer, as the HTTP side does).
CommitResult commit_here(SqliteJournal& journal, CommitRequest request) {
  return fbr::test::journal_sync([&](Journal::Callback done) {
    journal.commit_or_defer(std::move(request), std::move(done),
                            [](const std::function<void()>& run) { run(); });
  });
}

std::int64_t scalar(const fs::path& dir, const std::string& sql) {
  sqlite::Database db;
  REQUIRE_FALSE(db.open(SqliteJournal::file_in(dir).string(), true).has_value());
  sqlite::Statement s;
  REQUIRE_FALSE(s.prepare(db, sql).has_value());
  REQUIRE(s.step() == SQLITE_ROW);
  return s.integer(0);
}

void make_file(const fs::path& dir, std::string_view sql) {
  sqlite::Database db;
  REQUIRE_FALSE(db.open(SqliteJournal::file_in(dir).string(), false).has_value());
  REQUIRE_FALSE(db.exec(sql).has_value());
}

}  // namespace

TEST_CASE("journal format 2 keeps a new event's first attempt in its row and a repeat apart") {
  SchemaDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  REQUIRE(commit_now(journal, request_for("k1")).ok);
  CHECK(scalar(dir.path, "PRAGMA user_version") == sqlite::kFormat);
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM attempts") == 0);  // one row, one table
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'events_log_id'") == 0);
  const auto again = commit_now(journal, request_for("k1"));
  CHECK(again.duplicate);
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM attempts WHERE duplicate = 1") == 1);
  journal.stop();
  std::string error;
  const auto rows = list_events(dir.path, "k1", 10, error);
  REQUIRE(error.empty());
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].attempts.size() == 2);
  CHECK(rows[0].attempts[0].remote_addr == "10.0.0.9:9");
  CHECK(rows[0].attempts[0].request_id == "req-k1");
  CHECK_FALSE(rows[0].attempts[0].duplicate);
  CHECK(rows[0].attempts[1].duplicate);
}

TEST_CASE("journal of format 1 is upgraded at open with every attempt and delivery kept") {
  SchemaDir dir;
  make_file(dir.path, kFormat1);
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  CHECK(journal.unavailable_reason().empty());
  CHECK(scalar(dir.path, "PRAGMA user_version") == sqlite::kFormat);
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM attempts") == 1);  // the repeat only
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'events_log_id'") == 0);
  // The old event is still a duplicate when Redox sends it once more, and new events go in.
  CHECK(commit_now(journal, request_for("log-1")).duplicate);
  CHECK_FALSE(commit_now(journal, request_for("log-2")).duplicate);
  journal.stop();
  std::string error;
  const auto rows = list_events(dir.path, "log-1", 10, error);
  REQUIRE(error.empty());
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].attempts.size() == 3);
  CHECK(rows[0].attempts[0].attempt_id == "att-1");
  CHECK(rows[0].attempts[0].remote_addr == "10.0.0.1:1");
  CHECK(rows[0].attempts[0].request_id == "req-1");
  CHECK_FALSE(rows[0].attempts[0].duplicate);
  CHECK(rows[0].attempts[1].attempt_id == "att-2");
  CHECK(rows[0].attempts[1].duplicate);
  CHECK(rows[0].attempts[2].remote_addr == "10.0.0.9:9");
  REQUIRE(rows[0].deliveries.size() == 1);
  CHECK(rows[0].deliveries[0].state == "done");
}

TEST_CASE("journal of format 1 read by the CLI before any start is upgraded first") {
  SchemaDir dir;
  make_file(dir.path, kFormat1);
  std::string error;
  const auto rows = list_events(dir.path, "", 10, error);
  REQUIRE(error.empty());
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].attempts.size() == 2);
  CHECK(scalar(dir.path, "PRAGMA user_version") == sqlite::kFormat);
}

TEST_CASE("journal of a newer format is refused whole and left as it is") {
  SchemaDir dir;
  make_file(dir.path, "CREATE TABLE events (key TEXT PRIMARY KEY); PRAGMA user_version = 99;");
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  CHECK(journal.unavailable_reason().find("journal format 99 is newer") != std::string::npos);
  CHECK_FALSE(commit_now(journal, request_for("k")).ok);
  journal.stop();
  CHECK(scalar(dir.path, "PRAGMA user_version") == 99);
}

namespace {

/// Commits 3000 events of 6 KiB (two pages each and their index pages: some 9000 WAL frames,
/// which a WAL that never started over would hold all at once, 36 MiB and more) and returns the
/// largest the WAL file was after a commit.
std::uintmax_t commit_many(SqliteJournal& journal, const fs::path& dir, bool here = false) {
  const std::string body(6 * 1024, 'x');
  std::uintmax_t largest_wal = 0;
  const fs::path wal = SqliteJournal::file_in(dir).string() + "-wal";
  for (int i = 0; i < 3000; ++i) {
    auto request = request_for("k" + std::to_string(i), body);
    REQUIRE(
        (here ? commit_here(journal, std::move(request)) : commit_now(journal, std::move(request)))
            .ok);
    std::error_code ec;
    largest_wal = std::max(largest_wal, fs::file_size(wal, ec));
  }
  return largest_wal;
}

constexpr std::uintmax_t kWalBound =
    (sqlite::Checkpointer::kRestartFrames + sqlite::Checkpointer::kBackgroundFrames) * 4120ULL;

}  // namespace

TEST_CASE("journal checkpoints beside the writer and its WAL stays bounded under load") {
  SchemaDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  const std::uintmax_t largest_wal = commit_many(journal, dir.path);
  // The background thread copied pages back (no checkpoint ran inside a COMMIT: SQLite's own
  // auto-checkpoint is off). On a fast disk it keeps up and the WAL starts over by itself; on a
  // slow one the writer finishes the last frames (the next test).
  const auto passes = journal.checkpoints().first;
  CHECK(passes > 0);
  // One pass per kPassFrames new frames (each syncs the WAL and the database file), not one per
  // commit once the WAL is past the threshold: 3000 commits of at most 8 frames each.
  MESSAGE("background passes: " << passes);
  CHECK(passes <= 3000 * 8 / sqlite::Checkpointer::kPassFrames);
  CHECK(largest_wal <= kWalBound);
  journal.stop();
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM events") == 3000);
}

TEST_CASE("journal writer lets the WAL start over itself when the checkpoint thread lags") {
  SchemaDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  journal.hold_background_checkpoints(true);  // as if its passes could never keep up
  const std::uintmax_t largest_wal = commit_many(journal, dir.path);
  const auto [passes, finishes] = journal.checkpoints();
  CHECK(passes == 0);
  CHECK(finishes > 0);
  CHECK(largest_wal <= kWalBound);
  journal.stop();
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM events") == 3000);
}

TEST_CASE("journal committing on its callers' threads leaves the WAL's restart to its writer") {
  // Every commit runs on this thread (commit_or_defer with an idle writer), none of them finishes
  // a checkpoint here: the writer thread does, between them, and the WAL stays as bounded.
  SchemaDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  journal.hold_background_checkpoints(true);
  const std::uintmax_t largest_wal = commit_many(journal, dir.path, true);
  CHECK(journal.checkpoints().second > 0);
  CHECK(largest_wal <= kWalBound);
  journal.stop();
  CHECK(scalar(dir.path, "SELECT COUNT(*) FROM events") == 3000);
}
