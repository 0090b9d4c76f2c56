#include "server/journal/sqlite/journal.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <system_error>

#include "server/support/ids.hpp"

namespace fbr::server {
namespace {

constexpr std::string_view kSchema = R"sql(
CREATE TABLE IF NOT EXISTS events (
  key          TEXT PRIMARY KEY,
  log_id       TEXT NOT NULL,
  attempt_id   TEXT NOT NULL,
  status       INTEGER NOT NULL,
  test         INTEGER,
  output_count INTEGER NOT NULL,
  received_at  TEXT NOT NULL,
  body         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_log_id ON events(log_id);
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
CREATE TABLE IF NOT EXISTS quarantine (
  id          INTEGER PRIMARY KEY,
  received_at TEXT NOT NULL,
  attempt_id  TEXT NOT NULL,
  remote_addr TEXT NOT NULL,
  request_id  TEXT NOT NULL,
  body        BLOB NOT NULL,
  errors      TEXT NOT NULL
);
)sql";

// Most requests a batch takes: bounds the latency one transaction adds to the first in line.
constexpr std::size_t kMaxBatch = 512;
// Below this much free space the journal reports itself not writable (readyz).
constexpr unsigned long long kMinFreeBytes = 1024 * 1024;

}  // namespace

std::string_view to_string(DeliveryState state) {
  switch (state) {
    case DeliveryState::kPending:
      return "pending";
    case DeliveryState::kRunning:
      return "running";
    case DeliveryState::kDone:
      return "done";
    case DeliveryState::kFailed:
      return "failed";
    case DeliveryState::kDead:
      return "dead";
  }
  return "pending";
}

std::int64_t unix_ms_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::filesystem::path Journal::file_in(const std::filesystem::path& data_dir) {
  return data_dir / "journal.sqlite";
}

std::optional<std::string> Journal::open(const std::filesystem::path& data_dir) {
  data_dir_ = data_dir;
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return "cannot create data_dir " + data_dir.string() + ": " + ec.message();
  ::chmod(data_dir.c_str(), 0700);
  if (auto error = connect()) {
    unavailable_reason_ = *error;
    needs_reconnect_ = true;
    last_commit_ok_ = false;
  }
  writer_ = std::thread([this] { run(); });
  return std::nullopt;
}

std::optional<std::string> Journal::connect() {
  const auto file = file_in(data_dir_).string();
  insert_event_ = {};
  insert_attempt_ = {};
  insert_quarantine_ = {};
  insert_delivery_ = {};
  update_delivery_ = {};
  if (auto error = db_.open(file, false)) return "cannot open journal " + file + ": " + *error;
  sqlite3_busy_timeout(db_.handle(), 5000);
  // WAL + synchronous=FULL: a commit is on disk when COMMIT returns (fsync of the WAL).
  for (std::string_view pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto error = db_.exec(pragma)) return "journal " + file + ": " + *error;
  }
  if (auto error = db_.exec(kSchema)) return "journal " + file + ": " + *error;
  // Deliveries a previous run left running were interrupted: they run again (at least once).
  if (auto error = db_.exec("UPDATE deliveries SET state = 'pending' WHERE state = 'running'")) {
    return "journal " + file + ": " + *error;
  }
  if (auto error = insert_event_.prepare(
          db_,
          "INSERT OR IGNORE INTO events(key, log_id, attempt_id, status, test, output_count, "
          "received_at, body) VALUES (?,?,?,?,?,?,?,?)")) {
    return *error;
  }
  if (auto error = insert_attempt_.prepare(
          db_,
          "INSERT INTO attempts(event_key, attempt_id, received_at, remote_addr, request_id, "
          "duplicate) VALUES (?,?,?,?,?,?)")) {
    return *error;
  }
  if (auto error = insert_quarantine_.prepare(
          db_,
          "INSERT INTO quarantine(received_at, attempt_id, remote_addr, request_id, body, errors) "
          "VALUES (?,?,?,?,?,?)")) {
    return *error;
  }
  if (auto error = insert_delivery_.prepare(
          db_,
          "INSERT OR IGNORE INTO deliveries(event_key, handler, state, attempts, next_attempt_at, "
          "last_error, updated_at) VALUES (?,?,'pending',0,0,'',?)")) {
    return *error;
  }
  if (auto error = update_delivery_.prepare(
          db_,
          "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
          "updated_at = ? WHERE event_key = ? AND handler = ?")) {
    return *error;
  }
  needs_reconnect_ = false;
  return std::nullopt;
}

Journal::~Journal() {
  stop();
}

void Journal::commit(CommitRequest request, Callback done) {
  enqueue({std::move(request), std::move(done)});
}

void Journal::update(std::vector<DeliveryUpdate> updates, Callback done) {
  enqueue({std::move(updates), std::move(done)});
}

void Journal::enqueue(Pending pending) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(pending));
      wake_.notify_one();
      return;
    }
  }
  pending.done(CommitResult{false, false, "journal is shutting down"});
}

bool Journal::writable() {
  struct statvfs fs {};
  if (::statvfs(data_dir_.c_str(), &fs) != 0) return false;
  if ((fs.f_flag & ST_RDONLY) != 0) return false;
  if (static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize < kMinFreeBytes) return false;
  if (last_commit_ok_.load()) return true;
  if (!probe_queued_.exchange(true)) {
    enqueue({std::monostate{}, [this](const CommitResult&) { probe_queued_ = false; }});
  }
  return false;
}

int Journal::synchronous_level() {
  if (!db_.is_open()) return -1;
  sqlite::Statement pragma;
  if (pragma.prepare(db_, "PRAGMA synchronous")) return -1;
  return pragma.step() == SQLITE_ROW ? static_cast<int>(pragma.integer(0)) : -1;
}

void Journal::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (writer_.joinable()) writer_.join();
  insert_event_ = {};
  insert_attempt_ = {};
  insert_quarantine_ = {};
  insert_delivery_ = {};
  update_delivery_ = {};
  db_.close();
}

void Journal::run() {
  std::vector<Pending> batch;
  std::vector<CommitResult> results;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is done
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    results.assign(batch.size(), CommitResult{});
    std::optional<std::string> error;
    if (needs_reconnect_) error = connect();
    if (!error) error = write_batch(batch, results);
    if (error) {
      // Nothing of the batch is durable: every request in it is answered 503, Redox retries.
      needs_reconnect_ = true;
      for (auto& r : results)
        r = CommitResult{false, false, *error};
    }
    last_commit_ok_.store(!error);
    bool created_deliveries = false;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (const auto* r = std::get_if<CommitRequest>(&batch[i].op)) {
        created_deliveries |= results[i].ok && !results[i].duplicate && !r->handlers.empty();
      }
    }
    // The dispatcher looks at once instead of at its next poll.
    if (created_deliveries && new_deliveries_) new_deliveries_();
    for (std::size_t i = 0; i < batch.size(); ++i)
      batch[i].done(std::move(results[i]));
    batch.clear();
  }
}

std::optional<std::string> Journal::write_batch(std::vector<Pending>& batch,
                                                std::vector<CommitResult>& results) {
  if (auto error = db_.exec("BEGIN IMMEDIATE")) return error;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    std::optional<std::string> error;
    if (std::holds_alternative<std::monostate>(batch[i].op)) {
      results[i] = CommitResult{true, false, {}};  // a probe: the transaction itself is the test
    } else if (const auto* r = std::get_if<CommitRequest>(&batch[i].op)) {
      error = write_event(*r, results[i]);
    } else {
      error = write_updates(std::get<std::vector<DeliveryUpdate>>(batch[i].op));
      results[i] = CommitResult{!error, false, {}};
    }
    if (error) {
      (void)db_.exec("ROLLBACK");
      return error;
    }
  }
  if (auto error = db_.exec("COMMIT")) {
    (void)db_.exec("ROLLBACK");
    return error;
  }
  return std::nullopt;
}

std::optional<std::string> Journal::write_event(const CommitRequest& r, CommitResult& result) {
  const Receipt& receipt = r.receipt;
  // Each statement: step, then reset (which keeps the step's result code for us).
  auto run = [this](sqlite::Statement& statement) -> std::optional<std::string> {
    int rc = statement.step();
    statement.reset();
    if (rc != SQLITE_DONE) return db_.last_error();
    return std::nullopt;
  };
  if (r.quarantine) {
    insert_quarantine_.bind(1, receipt.received_at)
        .bind(2, receipt.attempt_id)
        .bind(3, receipt.remote_addr)
        .bind(4, receipt.request_id)
        .bind_blob(5, r.body)
        .bind(6, r.errors_json);
    if (auto error = run(insert_quarantine_)) return error;
    result = CommitResult{true, false, {}};
    return std::nullopt;
  }
  insert_event_.bind(1, r.key)
      .bind(2, r.log_id)
      .bind(3, receipt.attempt_id)
      .bind(4, std::int64_t{r.status});
  if (r.test) {
    insert_event_.bind(5, std::int64_t{*r.test ? 1 : 0});
  } else {
    insert_event_.bind_null(5);
  }
  insert_event_.bind(6, r.output_count).bind(7, receipt.received_at).bind_blob(8, r.body);
  if (auto error = run(insert_event_)) return error;
  const bool duplicate = db_.changes() == 0;
  insert_attempt_.bind(1, r.key)
      .bind(2, receipt.attempt_id)
      .bind(3, receipt.received_at)
      .bind(4, receipt.remote_addr)
      .bind(5, receipt.request_id)
      .bind(6, std::int64_t{duplicate ? 1 : 0});
  if (auto error = run(insert_attempt_)) return error;
  if (!duplicate) {
    for (const auto& handler : r.handlers) {
      insert_delivery_.bind(1, r.key).bind(2, handler).bind(3, receipt.received_at);
      if (auto error = run(insert_delivery_)) return error;
    }
  }
  result = CommitResult{true, duplicate, {}};
  return std::nullopt;
}

std::optional<std::string> Journal::write_updates(const std::vector<DeliveryUpdate>& updates) {
  const std::string now = utc_now_iso();
  for (const auto& u : updates) {
    update_delivery_.bind(1, to_string(u.state))
        .bind(2, std::int64_t{u.attempts})
        .bind(3, u.next_attempt_at_ms)
        .bind(4, u.last_error)
        .bind(5, now)
        .bind(6, u.event_key)
        .bind(7, u.handler);
    int rc = update_delivery_.step();
    update_delivery_.reset();
    if (rc != SQLITE_DONE) return db_.last_error();
  }
  return std::nullopt;
}

namespace {

/// Opens an existing journal for the CLI; error message or nullopt.
std::optional<std::string> open_existing(const std::filesystem::path& data_dir, bool read_only,
                                         sqlite::Database& db) {
  const auto file = Journal::file_in(data_dir);
  if (!std::filesystem::exists(file)) return "no journal at " + file.string();
  if (auto e = db.open(file.string(), read_only)) {
    return "cannot open journal " + file.string() + ": " + *e;
  }
  sqlite3_busy_timeout(db.handle(), 10000);
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
                  "WHERE (?1 = '' OR log_id = ?1 OR key = ?1) "
                  "ORDER BY received_at DESC, rowid DESC LIMIT ?2"},
        std::pair{&attempts,
                  "SELECT attempt_id, received_at, remote_addr, request_id, duplicate "
                  "FROM attempts WHERE event_key = ? ORDER BY id"},
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
  if (auto e = find.prepare(db, "SELECT key FROM events WHERE log_id = ?1 OR key = ?1")) {
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

}  // namespace fbr::server
