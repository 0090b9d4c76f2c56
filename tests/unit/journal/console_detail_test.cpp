// The console's event page, quarantine, counts, bulk replay and health on the SQLite journal, and
// a journal made before the delivery history existed.
#include <doctest/doctest.h>
#include <spdlog/sinks/null_sink.h>

#include "server/journal/sqlite/backend.hpp"
#include "server/journal/sqlite/console.hpp"
#include "server/journal/sqlite/database.hpp"
#include "server/journal/sqlite/events.hpp"
#include "tests/unit/journal/console_support.hpp"

using namespace fbr::server;
using fbr::test::commit;
using fbr::test::console_event;
using fbr::test::ConsoleDir;
using fbr::test::update;

namespace {

/// A delivery update that ends an attempt.
DeliveryUpdate finished(const std::string& key, const std::string& handler, DeliveryState state,
                        int attempts, const std::string& error, const std::string& outcome) {
  DeliveryUpdate u{key, handler, state, attempts, 0, error};
  u.finished = FinishedAttempt{"2026-01-01T00:00:0" + std::to_string(attempts) + ".000Z",
                               10 * attempts, outcome};
  return u;
}

CommitRequest quarantined_body(const std::string& body, const std::string& attempt) {
  CommitRequest q;
  q.quarantine = true;
  q.body = body;
  q.errors_json = R"([{"path":"/Meta","message":"missing"}])";
  q.receipt = {"2026-01-01T00:00:00.000Z", attempt, "10.0.0.7:1", "req-" + attempt};
  return q;
}

}  // namespace

TEST_CASE("console shows an event whole with its attempts deliveries and their history") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  REQUIRE(commit(journal, console_event("k1", "2026-01-01T00:00:00.000Z", {"http", "file"})));
  REQUIRE(commit(journal, console_event("k1", "2026-01-01T00:00:05.000Z")));  // a duplicate
  REQUIRE(update(journal, {{"k1", "http", DeliveryState::kRunning, 1, 0, ""}}));
  REQUIRE(update(journal, {finished("k1", "http", DeliveryState::kFailed, 1, "503", "retry")}));
  REQUIRE(update(journal, {finished("k1", "http", DeliveryState::kDead, 2,
                                    "gave up after 2 attempts: 503", "dead"),
                           finished("k1", "file", DeliveryState::kDone, 1, "", "done")}));
  SqliteConsole console(dir.path);
  std::string error;
  auto detail = console.event_detail("k1", error);
  CHECK(error.empty());
  REQUIRE(detail.has_value());
  CHECK(detail->summary.key == "k1");
  CHECK(detail->summary.attempts == 2);
  CHECK(detail->body == R"({"Meta":{"Logs":[{"ID":"k1"}]}})");
  REQUIRE(detail->attempts.size() == 2);
  CHECK_FALSE(detail->attempts[0].duplicate);
  CHECK(detail->attempts[1].duplicate);
  CHECK(detail->attempts[1].received_at == "2026-01-01T00:00:05.000Z");
  REQUIRE(detail->deliveries.size() == 2);
  const auto& file = detail->deliveries[0];
  const auto& http = detail->deliveries[1];
  CHECK(file.handler == "file");
  CHECK(file.state == "done");
  REQUIRE(file.history.size() == 1);
  CHECK(file.history[0].outcome == "done");
  CHECK(http.state == "dead");
  CHECK(http.attempts == 2);
  CHECK(http.last_error == "gave up after 2 attempts: 503");
  REQUIRE(http.history.size() == 2);  // the `running` update ended no attempt
  CHECK(http.history[0].attempt == 1);
  CHECK(http.history[0].started_at == "2026-01-01T00:00:01.000Z");
  CHECK(http.history[0].duration_ms == 10);
  CHECK(http.history[0].outcome == "retry");
  CHECK(http.history[0].error == "503");
  CHECK(http.history[1].attempt == 2);
  CHECK(http.history[1].outcome == "dead");
  REQUIRE(detail->summary.deliveries.size() == 2);
  CHECK(detail->summary.deliveries[1].state == "dead");
}

TEST_CASE("console finds an event by its key which is its Log ID and says none") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  REQUIRE(commit(
      journal, console_event("d9f5d293-7110-461e-a875-3beb089e79f3", "2026-01-01T00:00:00.000Z")));
  REQUIRE(commit(journal, console_event("sha256:00ff", "2026-01-02T00:00:00.000Z")));
  SqliteConsole console(dir.path);
  std::string error;
  auto by_log = console.event_detail("d9f5d293-7110-461e-a875-3beb089e79f3", error);
  REQUIRE(by_log.has_value());
  CHECK(by_log->summary.log_id == "d9f5d293-7110-461e-a875-3beb089e79f3");
  CHECK(by_log->attempts.size() == 1);
  auto by_key = console.event_detail("sha256:00ff", error);
  REQUIRE(by_key.has_value());
  CHECK(by_key->summary.key == "sha256:00ff");
  for (std::string missing : {"nope", "", "' OR 1=1 --", "%", "d9f5d293"}) {
    CHECK_FALSE(console.event_detail(missing, error).has_value());
    CHECK(error.empty());
  }
}

TEST_CASE("console lists the quarantine newest first by keyset and shows one with its body") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  for (int i = 0; i < 5; ++i) {
    REQUIRE(commit(journal, quarantined_body(std::string(static_cast<std::size_t>(i + 1), 'x'),
                                             "q" + std::to_string(i))));
  }
  SqliteConsole console(dir.path);
  std::string error;
  auto first = console.query_quarantine("", 3, error);
  CHECK(error.empty());
  REQUIRE(first.items.size() == 3);
  CHECK(first.items[0].id == "5");
  CHECK(first.items[0].attempt_id == "q4");
  CHECK(first.items[0].bytes == 5);
  CHECK(first.items[0].body.empty());  // lists leave the body out
  CHECK(first.items[0].errors_json == R"([{"path":"/Meta","message":"missing"}])");
  CHECK(first.items[0].remote_addr == "10.0.0.7:1");
  CHECK(first.items[0].request_id == "req-q4");
  REQUIRE_FALSE(first.next_cursor.empty());
  auto second = console.query_quarantine(first.next_cursor, 3, error);
  REQUIRE(second.items.size() == 2);
  CHECK(second.items[0].id == "2");
  CHECK(second.items[1].id == "1");
  CHECK(second.next_cursor.empty());
  CHECK(console.query_quarantine("", 100000, error).items.size() == 5);

  auto one = console.quarantined("2", error);
  REQUIRE(one.has_value());
  CHECK(one->body == "xx");
  CHECK(one->bytes == 2);
  CHECK(one->attempt_id == "q1");
}

TEST_CASE("console refuses a bad quarantine cursor and finds no quarantined id it never gave") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  REQUIRE(commit(journal, quarantined_body("x", "q")));
  SqliteConsole console(dir.path);
  std::string error;
  auto page = console.query_quarantine("not a cursor", 10, error);
  CHECK(error.rfind("cursor: ", 0) == 0);
  CHECK(page.items.empty());
  for (std::string id : {"0", "01", "-1", "1 OR 1=1", "1.0", "", "99", "99999999999999999999"}) {
    error.clear();
    CHECK_FALSE(console.quarantined(id, error).has_value());
    CHECK(error.empty());
  }
}

TEST_CASE("console counts events quarantine and deliveries by state") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  REQUIRE(commit(journal, console_event("a", "2026-01-01T00:00:00.000Z", {"x", "y"})));
  REQUIRE(commit(journal, console_event("b", "2026-01-01T00:00:00.000Z", {"x"})));
  REQUIRE(commit(journal, quarantined_body("x", "q")));
  REQUIRE(update(journal, {{"a", "x", DeliveryState::kDead, 1, 0, "no"}}));
  SqliteConsole console(dir.path);
  std::string error;
  auto counts = console.counts(error);
  CHECK(error.empty());
  CHECK(counts.events == 2);
  CHECK(counts.quarantined == 1);
  CHECK(counts.deliveries ==
        std::map<std::string, std::int64_t>{
            {"dead", 1}, {"done", 0}, {"failed", 0}, {"pending", 2}, {"running", 0}});
}

TEST_CASE("bulk replay puts every dead delivery back to pending at once and only dead ones") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  for (const auto* key : {"a", "b", "c"})
    REQUIRE(commit(journal, console_event(key, "2026-01-01T00:00:00.000Z", {"h"})));
  REQUIRE(update(journal, {{"a", "h", DeliveryState::kDead, 10, 0, "gave up"},
                           {"b", "h", DeliveryState::kDead, 1, 0, "HTTP 404"},
                           {"c", "h", DeliveryState::kFailed, 2, 99999, "503"}}));
  std::string error;
  CHECK(replay_state(dir.path, "dead", error) == 2);
  CHECK(error.empty());
  SqliteConsole console(dir.path);
  auto a = console.event_detail("a", error);
  REQUIRE(a.has_value());
  CHECK(a->deliveries[0].state == "pending");
  CHECK(a->deliveries[0].attempts == 0);
  CHECK(a->deliveries[0].next_attempt_at_ms == 0);
  auto c = console.event_detail("c", error);
  REQUIRE(c.has_value());
  CHECK(c->deliveries[0].state == "failed");
  CHECK(replay_state(dir.path, "dead", error) == 0);
  CHECK(replay_state(dir.path, "failed", error) == 1);
  CHECK(error.empty());
  auto counts = console.counts(error);
  CHECK(counts.deliveries["pending"] == 3);
}

TEST_CASE("bulk replay refuses any state but dead and failed and a missing journal") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  REQUIRE(commit(journal, console_event("a", "2026-01-01T00:00:00.000Z", {"h"})));
  for (std::string state : {"done", "pending", "running", "", "dead' OR 1=1 --", "DEAD"}) {
    std::string error;
    CHECK(replay_state(dir.path, state, error) == 0);
    CHECK(error == "state: must be dead or failed");
  }
  std::string error;
  CHECK(replay_state(dir.path / "missing", "dead", error) == 0);
  CHECK(error.rfind("journal: no journal at", 0) == 0);
  SqliteConsole console(dir.path / "missing");
  error.clear();
  console.counts(error);
  CHECK(error.rfind("journal: no journal at", 0) == 0);
}

TEST_CASE("a journal made before the delivery history gets it at its next open") {
  ConsoleDir dir;
  {
    // The schema as it was, with one event and a delivery.
    sqlite::Database db;
    REQUIRE_FALSE(db.open(SqliteJournal::file_in(dir.path).string(), false).has_value());
    REQUIRE_FALSE(db.exec(R"sql(
      CREATE TABLE events (key TEXT PRIMARY KEY, log_id TEXT NOT NULL, attempt_id TEXT NOT NULL,
        status INTEGER NOT NULL, test INTEGER, output_count INTEGER NOT NULL,
        received_at TEXT NOT NULL, body BLOB NOT NULL);
      CREATE INDEX events_log_id ON events(log_id);
      CREATE TABLE attempts (id INTEGER PRIMARY KEY, event_key TEXT NOT NULL REFERENCES events(key),
        attempt_id TEXT NOT NULL, received_at TEXT NOT NULL, remote_addr TEXT NOT NULL,
        request_id TEXT NOT NULL, duplicate INTEGER NOT NULL);
      CREATE INDEX attempts_event_key ON attempts(event_key);
      CREATE TABLE deliveries (event_key TEXT NOT NULL REFERENCES events(key),
        handler TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL, PRIMARY KEY (event_key, handler));
      CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
      CREATE TABLE quarantine (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL,
        attempt_id TEXT NOT NULL, remote_addr TEXT NOT NULL, request_id TEXT NOT NULL,
        body BLOB NOT NULL, errors TEXT NOT NULL);
      INSERT INTO events VALUES ('old', 'old', 'att-old', 200, NULL, 1, '2025-01-01T00:00:00.000Z', '{}');
      INSERT INTO attempts VALUES (1, 'old', 'att-old', '2025-01-01T00:00:00.000Z', '127.0.0.1:1', 'req-old', 0);
      INSERT INTO deliveries VALUES ('old', 'h', 'failed', 1, 5, 'boom', '2025-01-01T00:00:01.000Z');
    )sql")
                      .has_value());
  }
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  REQUIRE(journal.unavailable_reason().empty());
  REQUIRE(update(journal, {finished("old", "h", DeliveryState::kDone, 2, "", "done")}));
  SqliteConsole console(dir.path);
  std::string error;
  auto old = console.event_detail("old", error);
  CHECK(error.empty());
  REQUIRE(old.has_value());
  REQUIRE(old->deliveries.size() == 1);
  CHECK(old->deliveries[0].state == "done");
  REQUIRE(old->deliveries[0].history.size() == 1);  // the attempts before it were not kept
  CHECK(old->deliveries[0].history[0].attempt == 2);
  EventQuery by_request;
  by_request.q = "req-old";  // the new index on an old table
  CHECK(console.query_events(by_request, error).events.size() == 1);
}

TEST_CASE("the sqlite backend reports free space and writability as its health") {
  ConsoleDir dir;
  fbr::config::Config config;
  config.data_dir = dir.path / "data";
  auto backend = make_sqlite_backend(config);
  auto before = backend->health();
  REQUIRE(before.size() == 2);
  CHECK(before[0].name == "journal_writable");
  CHECK_FALSE(before[0].ok);  // not opened
  CHECK(before[1].name == "free_space");
  CHECK_FALSE(before[1].ok);  // no data_dir yet
  CHECK(before[1].detail.find("cannot stat") != std::string::npos);
  const Logger log{fbr::config::Log{"off", fbr::config::LogFormat::kText},
                   std::make_shared<spdlog::sinks::null_sink_mt>()};
  REQUIRE_FALSE(backend->open(log).has_value());
  auto after = backend->health();
  CHECK(after[0].ok);
  CHECK(after[1].ok);
  CHECK(after[1].detail.find(" free") != std::string::npos);
  std::string error;
  CHECK(backend->counts(error).events == 0);
  CHECK(error.empty());
  CHECK(backend->replay_state("dead", error) == 0);  // no dispatcher to wake: nothing happens
  CHECK(error.empty());
  backend->journal().stop();
}
