#include "server/journal/sqlite/journal.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <system_error>
#include <utility>

#include "server/journal/sqlite/schema.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {
namespace {

// Most requests a batch takes: bounds the latency one transaction adds to the first in line.
constexpr std::size_t kMaxBatch = 512;

constexpr const char* kShuttingDown = "journal is shutting down";

}  // namespace

std::filesystem::path SqliteJournal::file_in(const std::filesystem::path& data_dir) {
  return data_dir / "journal.sqlite";
}

std::optional<std::string> SqliteJournal::open(const std::filesystem::path& data_dir) {
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

void SqliteJournal::close_statements() {
  checkpointer_.stop();
  for (auto* statement : {&insert_event_, &insert_attempt_, &insert_quarantine_, &insert_delivery_,
                          &update_delivery_, &insert_history_, &begin_, &commit_, &rollback_}) {
    *statement = {};
  }
}

std::optional<std::string> SqliteJournal::connect() {
  const auto file = file_in(data_dir_).string();
  close_statements();
  if (auto error = db_.open(file, false)) return "cannot open journal " + file + ": " + *error;
  sqlite3_busy_timeout(db_.handle(), 5000);
  // WAL + synchronous=FULL: a commit is on disk when COMMIT returns (fsync of the WAL). A WAL
  // that grew in a burst is cut back to 64 MiB when it starts over; the writer's page cache
  // holds the indexes' hot pages (16 MiB) instead of reading them back from the file.
  for (std::string_view pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
        "PRAGMA journal_size_limit=67108864", "PRAGMA cache_size=-16384"}) {
    if (auto error = db_.exec(pragma)) return "journal " + file + ": " + *error;
  }
  if (auto error = sqlite::ensure_schema(db_)) return "journal " + file + ": " + *error;
  // Deliveries a previous run left running were interrupted: they run again (at least once).
  if (auto error = db_.exec("UPDATE deliveries SET state = 'pending' WHERE state = 'running'")) {
    return "journal " + file + ": " + *error;
  }
  // The first attempt is part of the event's row; `attempts` takes the repeated ones.
  if (auto error = insert_event_.prepare(
          db_,
          "INSERT OR IGNORE INTO events(key, log_id, attempt_id, status, test, output_count, "
          "received_at, body, remote_addr, request_id) VALUES (?,?,?,?,?,?,?,?,?,?)")) {
    return *error;
  }
  if (auto error = insert_attempt_.prepare(
          db_,
          "INSERT INTO attempts(event_key, attempt_id, received_at, remote_addr, request_id, "
          "duplicate) VALUES (?,?,?,?,?,1)")) {
    return *error;
  }
  for (auto [statement, sql] : {std::pair{&begin_, "BEGIN IMMEDIATE"},
                                std::pair{&commit_, "COMMIT"}, std::pair{&rollback_, "ROLLBACK"}}) {
    if (auto error = statement->prepare(db_, sql)) return *error;
  }
  if (auto error = checkpointer_.start(db_, file)) return "journal " + file + ": " + *error;
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
  if (auto error = insert_history_.prepare(
          db_,
          "INSERT INTO delivery_attempts(event_key, handler, attempt, started_at, duration_ms, "
          "outcome, error) VALUES (?,?,?,?,?,?,?)")) {
    return *error;
  }
  needs_reconnect_ = false;
  return std::nullopt;
}

SqliteJournal::~SqliteJournal() {
  stop();
}

void SqliteJournal::commit(CommitRequest request, Callback done) {
  enqueue({std::move(request), std::move(done)});
}

void SqliteJournal::commit_or_defer(CommitRequest request, Callback done, const Defer& defer) {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    lock.unlock();
    done(CommitResult{false, false, kShuttingDown});
    return;
  }
  // Nothing being written, nothing waiting, no checkpoint finish left for the writer (it would
  // never get in between callers that commit back to back), the last commit went through (a
  // journal to reopen is the writer's work): the caller's thread may write this one itself.
  const bool writer_may_take = !busy_ && !deferred_;
  const bool here = writer_may_take && !finish_due_ && queue_.empty() && last_commit_ok_.load();
  queue_.push_back({std::move(request), std::move(done)});
  if (!here) {
    lock.unlock();
    // The writer is woken only when it may take the queue now, and after the unlock (woken under
    // the lock, it would only block on the mutex). A busy writer looks again after its batch; a
    // commit running here, or deferred, hands the queue on when it is done.
    if (writer_may_take) wake_.notify_one();
    return;
  }
  deferred_ = true;
  lock.unlock();
  defer([this] { run_here(); });
}

void SqliteJournal::run_here() {
  std::vector<Pending> batch;
  {
    std::unique_lock lock(mutex_);
    deferred_ = false;
    if (stopping_ || busy_ || queue_.size() != 1) {
      // Others came meanwhile (or the writer is finishing a checkpoint, or stopping): the writer
      // takes them all as one batch.
      lock.unlock();
      wake_.notify_one();
      return;
    }
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
    busy_ = true;
  }
  run_batch(batch, true);
  std::unique_lock lock(mutex_);
  busy_ = false;
  // Only when the writer has something to do: a needless wake-up costs it a context switch.
  const bool wake = stopping_ || finish_due_ || !queue_.empty();
  lock.unlock();
  if (wake) wake_.notify_one();
}

void SqliteJournal::update(std::vector<DeliveryUpdate> updates, Callback done) {
  enqueue({std::move(updates), std::move(done)});
}

void SqliteJournal::enqueue(Pending pending) {
  {
    std::unique_lock lock(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(pending));
      lock.unlock();
      wake_.notify_one();
      return;
    }
  }
  pending.done(CommitResult{false, false, kShuttingDown});
}

bool SqliteJournal::writable() {
  struct statvfs fs {};
  if (::statvfs(data_dir_.c_str(), &fs) != 0) return false;
  if ((fs.f_flag & ST_RDONLY) != 0) return false;
  if (static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize < kMinFreeBytes) return false;
  if (last_commit_ok_.load()) return true;
  if (!probe_queued_.exchange(true)) {
    enqueue({std::monostate{}, [this](const CommitResult&) { probe_queued_ = false; }});
  }
  return false;
}

int SqliteJournal::synchronous_level() {
  if (!db_.is_open()) return -1;
  sqlite::Statement pragma;
  if (pragma.prepare(db_, "PRAGMA synchronous")) return -1;
  return pragma.step() == SQLITE_ROW ? static_cast<int>(pragma.integer(0)) : -1;
}

void SqliteJournal::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (writer_.joinable()) writer_.join();
  close_statements();
  db_.close();
}

void SqliteJournal::run() {
  std::vector<Pending> batch;
  for (;;) {
    bool finish = false;
    {
      std::unique_lock lock(mutex_);
      // A queue that a run_here is on its way to look at is left to it.
      wake_.wait(lock, [&] {
        return !busy_ && (stopping_ || finish_due_ || (!queue_.empty() && !deferred_));
      });
      if (stopping_ && queue_.empty()) return;  // everything queued is done
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      finish = std::exchange(finish_due_, false);
      busy_ = true;
    }
    if (!batch.empty()) {
      run_batch(batch, false);
    } else if (finish) {
      checkpointer_.after_batch();  // the finish a run_here left
    }
    batch.clear();
    std::lock_guard lock(mutex_);
    busy_ = false;
  }
}

void SqliteJournal::run_batch(std::vector<Pending>& batch, bool here) {
  std::vector<CommitResult> results(batch.size());
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
  if (error) return;
  // After the answers went: a checkpoint this calls for delays the next batch, not this one, and
  // a finish (thousands of pages at worst) never blocks a caller's thread.
  if (here && checkpointer_.finish_due()) {
    std::lock_guard lock(mutex_);
    finish_due_ = true;
  } else {
    checkpointer_.after_batch();
  }
}

std::optional<std::string> SqliteJournal::run_statement(sqlite::Statement& statement) {
  // Step, then reset (which keeps the step's result code for last_error()).
  const int rc = statement.step();
  statement.reset();
  if (rc != SQLITE_DONE) return db_.last_error();
  return std::nullopt;
}

std::optional<std::string> SqliteJournal::write_batch(std::vector<Pending>& batch,
                                                      std::vector<CommitResult>& results) {
  // Prepared once: a batch's BEGIN and COMMIT are not parsed again each time.
  if (auto error = run_statement(begin_)) return error;
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
      (void)run_statement(rollback_);
      return error;
    }
  }
  if (auto error = run_statement(commit_)) {
    (void)run_statement(rollback_);
    return error;
  }
  return std::nullopt;
}

std::optional<std::string> SqliteJournal::write_event(const CommitRequest& r,
                                                      CommitResult& result) {
  const Receipt& receipt = r.receipt;
  if (r.quarantine) {
    insert_quarantine_.bind(1, receipt.received_at)
        .bind(2, receipt.attempt_id)
        .bind(3, receipt.remote_addr)
        .bind(4, receipt.request_id)
        .bind_blob(5, r.body)
        .bind(6, r.errors_json);
    if (auto error = run_statement(insert_quarantine_)) return error;
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
  insert_event_.bind(6, r.output_count)
      .bind(7, receipt.received_at)
      .bind_blob(8, r.body)
      .bind(9, receipt.remote_addr)
      .bind(10, receipt.request_id);
  if (auto error = run_statement(insert_event_)) return error;
  const bool duplicate = db_.changes() == 0;
  if (duplicate) {
    insert_attempt_.bind(1, r.key)
        .bind(2, receipt.attempt_id)
        .bind(3, receipt.received_at)
        .bind(4, receipt.remote_addr)
        .bind(5, receipt.request_id);
    if (auto error = run_statement(insert_attempt_)) return error;
  } else {
    for (const auto& handler : r.handlers) {
      insert_delivery_.bind(1, r.key).bind(2, handler).bind(3, receipt.received_at);
      if (auto error = run_statement(insert_delivery_)) return error;
    }
  }
  result = CommitResult{true, duplicate, {}};
  return std::nullopt;
}

std::optional<std::string> SqliteJournal::write_updates(
    const std::vector<DeliveryUpdate>& updates) {
  const std::string now = utc_now_iso();
  for (const auto& u : updates) {
    update_delivery_.bind(1, to_string(u.state))
        .bind(2, std::int64_t{u.attempts})
        .bind(3, u.next_attempt_at_ms)
        .bind(4, u.last_error)
        .bind(5, now)
        .bind(6, u.event_key)
        .bind(7, u.handler);
    if (auto error = run_statement(update_delivery_)) return error;
    if (!u.finished) continue;
    // The same bounded text as last_error: the handler's message, never a secret.
    insert_history_.bind(1, u.event_key)
        .bind(2, u.handler)
        .bind(3, std::int64_t{u.attempts})
        .bind(4, u.finished->started_at)
        .bind(5, u.finished->duration_ms)
        .bind(6, u.finished->outcome)
        .bind(7, u.last_error);
    if (auto error = run_statement(insert_history_)) return error;
  }
  return std::nullopt;
}

}  // namespace fbr::server
