#include "server/journal.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <system_error>

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

std::filesystem::path Journal::file_in(const std::filesystem::path& data_dir) {
  return data_dir / "journal.sqlite";
}

std::optional<std::string> Journal::open(const std::filesystem::path& data_dir) {
  data_dir_ = data_dir;
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return "cannot create data_dir " + data_dir.string() + ": " + ec.message();
  ::chmod(data_dir.c_str(), 0700);
  if (auto error = connect()) return error;
  writer_ = std::thread([this] { run(); });
  return std::nullopt;
}

std::optional<std::string> Journal::connect() {
  const auto file = file_in(data_dir_).string();
  insert_event_ = {};
  insert_attempt_ = {};
  insert_quarantine_ = {};
  if (auto error = db_.open(file, false)) return "cannot open journal " + file + ": " + *error;
  sqlite3_busy_timeout(db_.handle(), 5000);
  // WAL + synchronous=FULL: a commit is on disk when COMMIT returns (fsync of the WAL).
  for (std::string_view pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto error = db_.exec(pragma)) return "journal " + file + ": " + *error;
  }
  if (auto error = db_.exec(kSchema)) return "journal " + file + ": " + *error;
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
  needs_reconnect_ = false;
  return std::nullopt;
}

Journal::~Journal() {
  stop();
}

void Journal::commit(CommitRequest request, Callback done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back({std::move(request), std::move(done)});
      wake_.notify_one();
      return;
    }
  }
  done(CommitResult{false, false, "journal is shutting down"});
}

bool Journal::writable() const {
  if (!last_commit_ok_.load()) return false;
  struct statvfs fs {};
  if (::statvfs(data_dir_.c_str(), &fs) != 0) return false;
  if ((fs.f_flag & ST_RDONLY) != 0) return false;
  return static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize >= kMinFreeBytes;
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
    for (std::size_t i = 0; i < batch.size(); ++i)
      batch[i].done(std::move(results[i]));
    batch.clear();
  }
}

std::optional<std::string> Journal::write_batch(std::vector<Pending>& batch,
                                                std::vector<CommitResult>& results) {
  if (auto error = db_.exec("BEGIN IMMEDIATE")) return error;
  auto fail = [&]() -> std::optional<std::string> {
    std::string error = db_.last_error();
    (void)db_.exec("ROLLBACK");
    return error;
  };
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const CommitRequest& r = batch[i].request;
    const Receipt& receipt = r.receipt;
    if (r.quarantine) {
      insert_quarantine_.bind(1, receipt.received_at)
          .bind(2, receipt.attempt_id)
          .bind(3, receipt.remote_addr)
          .bind(4, receipt.request_id)
          .bind_blob(5, r.body)
          .bind(6, r.errors_json);
      int rc = insert_quarantine_.step();
      insert_quarantine_.reset();
      if (rc != SQLITE_DONE) return fail();
      results[i] = CommitResult{true, false, {}};
      continue;
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
    int rc = insert_event_.step();
    insert_event_.reset();
    if (rc != SQLITE_DONE) return fail();
    bool duplicate = db_.changes() == 0;
    insert_attempt_.bind(1, r.key)
        .bind(2, receipt.attempt_id)
        .bind(3, receipt.received_at)
        .bind(4, receipt.remote_addr)
        .bind(5, receipt.request_id)
        .bind(6, std::int64_t{duplicate ? 1 : 0});
    rc = insert_attempt_.step();
    insert_attempt_.reset();
    if (rc != SQLITE_DONE) return fail();
    results[i] = CommitResult{true, duplicate, {}};
  }
  if (auto error = db_.exec("COMMIT")) {
    (void)db_.exec("ROLLBACK");
    return error;
  }
  return std::nullopt;
}

std::vector<EventRow> list_events(const std::filesystem::path& data_dir, const std::string& log_id,
                                  int limit, std::string& error) {
  std::vector<EventRow> rows;
  const auto file = Journal::file_in(data_dir);
  if (!std::filesystem::exists(file)) {
    error = "no journal at " + file.string();
    return rows;
  }
  sqlite::Database db;
  if (auto e = db.open(file.string(), true)) {
    error = "cannot open journal " + file.string() + ": " + *e;
    return rows;
  }
  sqlite3_busy_timeout(db.handle(), 5000);
  sqlite::Statement events;
  sqlite::Statement attempts;
  if (auto e = events.prepare(db,
                              "SELECT key, log_id, received_at, status, output_count FROM events "
                              "WHERE (?1 = '' OR log_id = ?1 OR key = ?1) "
                              "ORDER BY received_at DESC, rowid DESC LIMIT ?2")) {
    error = *e;
    return rows;
  }
  if (auto e = attempts.prepare(db,
                                "SELECT attempt_id, received_at, remote_addr, request_id, "
                                "duplicate FROM attempts WHERE event_key = ? ORDER BY id")) {
    error = *e;
    return rows;
  }
  events.bind(1, log_id).bind(2, std::int64_t{limit});
  int rc;
  while ((rc = events.step()) == SQLITE_ROW) {
    EventRow row{events.text(0),    events.text(1),
                 events.text(2),    static_cast<int>(events.integer(3)),
                 events.integer(4), {}};
    attempts.bind(1, row.key);
    while (attempts.step() == SQLITE_ROW) {
      row.attempts.push_back({attempts.text(0), attempts.text(1), attempts.text(2),
                              attempts.text(3), attempts.integer(4) != 0});
    }
    attempts.reset();
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) error = db.last_error();
  return rows;
}

}  // namespace fbr::server
