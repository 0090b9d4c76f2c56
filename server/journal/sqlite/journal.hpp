#pragma once
// The embedded journal (journal.backend "sqlite", the default): SQLite (WAL, synchronous=FULL)
// under data_dir. One writer thread takes commits from a queue and makes one transaction, hence
// one fsync, per batch (group commit); checkpoints run beside it (sqlite/checkpointer.hpp). At
// low load (one event at a time, as Redox sends) a commit from the HTTP side runs on its io
// thread instead (commit_or_defer): two thread hand-offs less per event.
// Deliveries are rows of the same file (sqlite/dispatcher.hpp runs them; sqlite/events.hpp lists
// and replays them for the CLI).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "server/journal/journal.hpp"
#include "server/journal/sqlite/checkpointer.hpp"
#include "server/journal/sqlite/database.hpp"

namespace fbr::server {

/// An attempt that ended, as the delivery's history keeps it (a delivery_attempts row).
struct FinishedAttempt {
  std::string started_at;  ///< ISO 8601 UTC
  std::int64_t duration_ms = 0;
  std::string outcome;  ///< done, retry, dead: what the attempt made of the delivery
};

/// A delivery's new persisted state, written by the dispatcher through the journal's writer.
struct DeliveryUpdate {
  std::string event_key;
  std::string handler;
  DeliveryState state = DeliveryState::kPending;
  int attempts = 0;
  std::int64_t next_attempt_at_ms = 0;  ///< Unix time in ms
  std::string last_error;
  /// Set when this update ends an attempt: a history row (attempt number `attempts`, error
  /// `last_error`) in the same transaction as the delivery's new state.
  std::optional<FinishedAttempt> finished = std::nullopt;
};

class SqliteJournal final : public Journal {
 public:
  /// Below this much free space under data_dir the journal reports itself not writable.
  static constexpr std::uint64_t kMinFreeBytes = 1024 * 1024;

  /// The journal file under a data dir.
  static std::filesystem::path file_in(const std::filesystem::path& data_dir);

  /// Creates data_dir (0700) and the schema, starts the writer thread. Returns an error only when
  /// data_dir cannot be made at all; a journal that cannot be opened yet (read-only or full file
  /// system) leaves the journal unavailable (unavailable_reason()): commits fail (503) and each
  /// new one tries to reopen it, so the service recovers by itself once the disk is writable.
  std::optional<std::string> open(const std::filesystem::path& data_dir);
  /// Why the journal could not be opened at start, or empty.
  [[nodiscard]] const std::string& unavailable_reason() const { return unavailable_reason_; }
  ~SqliteJournal() override;

  /// Queues a commit; `done` runs on the writer thread after the batch's fsync (or its failure).
  void commit(CommitRequest request, Callback done) override;
  /// Low load without a hand-off: when the writer is idle, the commit waits for `defer` to run
  /// (after what the caller's thread had queued already) instead of waking the writer. If it is
  /// then still the only one waiting, it is written and fsync'd right there, on the caller's
  /// thread, and `done` runs there; if others came meanwhile (a burst), the writer takes them all
  /// as one batch as usual, so an io thread blocks in an fsync only for a lone commit, never for a
  /// queue. A checkpoint finish such a commit calls for is left to the writer thread.
  /// `defer` must not run its function after stop() (the server stops its io threads first).
  void commit_or_defer(CommitRequest request, Callback done, const Defer& defer) override;

  /// Queues delivery state changes (one transaction with whatever else is waiting).
  void update(std::vector<DeliveryUpdate> updates, Callback done);

  /// Called on the writer thread after a batch that created deliveries (wakes the dispatcher).
  void on_new_deliveries(std::function<void()> listener) { new_deliveries_ = std::move(listener); }

  /// Writable as far as we know: the last commit succeeded and the file system is not read-only
  /// or full. After a failure, a file system that looks writable again gets a probe commit in the
  /// background, so readiness comes back without waiting for traffic.
  [[nodiscard]] bool writable() override;

  /// Finishes queued commits, then stops the writer thread and closes the file.
  void stop() override;

  /// The writer connection's PRAGMA synchronous (2 = FULL: COMMIT returns after the WAL's fsync),
  /// -1 when the journal is not open. For the unit test of that promise; call while idle.
  [[nodiscard]] int synchronous_level();

  /// The checkpoints so far: passes of the background thread, and the writer's own finishes that
  /// let the WAL start over (for the tests of sqlite/checkpointer.hpp's promise).
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> checkpoints() const {
    return {checkpointer_.background_passes(), checkpointer_.writer_finishes()};
  }
  /// For the tests: the background checkpoints held back (sqlite::Checkpointer::hold_background).
  void hold_background_checkpoints(bool held) { checkpointer_.hold_background(held); }

 private:
  struct Pending {
    std::variant<std::monostate, CommitRequest, std::vector<DeliveryUpdate>>
        op;  // monostate: probe
    Callback done;
  };
  void enqueue(Pending pending);
  std::optional<std::string> write_event(const CommitRequest& r, CommitResult& result);
  std::optional<std::string> write_updates(const std::vector<DeliveryUpdate>& updates);
  /// One step of a statement that returns no row, then its reset; the error, or nullopt.
  std::optional<std::string> run_statement(sqlite::Statement& statement);
  void run();
  /// The batch's transaction, its answers, then the checkpointer's turn. `here`: on a caller's
  /// thread (commit_or_defer), which leaves a checkpoint finish to the writer.
  void run_batch(std::vector<Pending>& batch, bool here);
  /// The deferred half of commit_or_defer, on the caller's thread.
  void run_here();
  std::optional<std::string> connect();
  void close_statements();
  std::optional<std::string> write_batch(std::vector<Pending>& batch,
                                         std::vector<CommitResult>& results);

  std::filesystem::path data_dir_;
  sqlite::Database db_;
  sqlite::Statement insert_event_, insert_attempt_, insert_quarantine_, insert_delivery_,
      update_delivery_, insert_history_, begin_, commit_, rollback_;
  sqlite::Checkpointer checkpointer_;
  std::function<void()> new_deliveries_;
  bool needs_reconnect_ = false;
  std::atomic<bool> last_commit_ok_{true};
  std::atomic<bool> probe_queued_{false};
  std::string unavailable_reason_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  bool busy_ = false;        // a batch is being written (by the writer or run_here)
  bool deferred_ = false;    // a run_here is on its way: the writer leaves the queue to it
  bool finish_due_ = false;  // run_here left the checkpointer's finish to the writer
  std::thread writer_;
};

}  // namespace fbr::server
