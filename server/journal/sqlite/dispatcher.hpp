#pragma once
// The dispatcher of the SQLite journal: a loop over due delivery rows (pending, or failed and due
// again), at most `dispatch.concurrency` at once on worker threads, and at most a handler's own
// `concurrency` of one handler, each outcome persisted in the journal.
// A restart resumes exactly where the last run stopped; `replay` is an UPDATE the loop picks up.
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "core/retry.hpp"
#include "server/handlers/handler.hpp"
#include "server/journal/dispatcher.hpp"
#include "server/journal/sqlite/database.hpp"
#include "server/journal/sqlite/journal.hpp"
#include "server/journal/worker_slots.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {

/// The persisted state that follows an attempt's outcome: core::decide_retry as a delivery row
/// (a retry is due at now_ms + its delay).
DeliveryUpdate next_state(const std::string& event_key, const std::string& handler, int attempts,
                          const Outcome& outcome, const core::RetryPolicy& policy,
                          std::int64_t now_ms, double jitter);

class SqliteDispatcher final : public Dispatcher {
 public:
  /// `config` is the start-up snapshot: data_dir and concurrency stay; handlers can be reloaded.
  SqliteDispatcher(const config::Config& config, SqliteJournal& journal, Metrics& metrics,
                   const Logger& log);
  ~SqliteDispatcher() override;

  /// Builds every configured handler (errors name the handler) and starts the loop and workers.
  std::optional<std::string> start() override;

  /// New deliveries were committed: look now rather than at the next poll.
  void wake();

  /// Replaces the handlers (SIGHUP). Builds every new handler first: on any error nothing
  /// changes and the error (naming the handler) is returned. Running deliveries finish on the
  /// handler they started with.
  std::optional<std::string> reload(const config::Config& config) override;

  /// Stops scheduling, lets running deliveries finish and record their outcome; queued ones that
  /// had not started go back to pending.
  void stop() override;

 private:
  /// Builds the handlers of `config`; error message (naming the handler) or nullopt.
  std::optional<std::string> build(const config::Config& config, Routes& routes) const;
  struct Job {
    std::string event_key, handler, log_id, attempt_id, body, last_error;
    int status = 0;
    int attempts = 0;  ///< including this one
    std::int64_t next_attempt_at_ms = 0;
  };

  void schedule_loop();
  void worker_loop();
  /// Opens the scheduler's read connection (lazily: the journal may be unavailable at start).
  std::optional<std::string> connect();
  /// Due jobs, at most `room` (a JSON object: handler -> deliveries it may start) per handler
  /// and `limit` in all, earliest due first.
  std::vector<Job> fetch_due(const std::string& room, int limit, std::int64_t& next_due_ms);
  /// The JSON object fetch_due takes, from routes_ and slots_ (mutex_ held); "" when no handler
  /// may start a delivery.
  std::string room_json() const;
  bool persist(std::vector<DeliveryUpdate> updates);

  const config::Config& config_;
  SqliteJournal& journal_;
  Metrics& metrics_;
  const Logger& log_;
  Routes routes_;        // guarded by mutex_
  sqlite::Database db_;  // read side: the scheduler's own connection
  sqlite::Statement due_, next_due_, waiting_;

  std::mutex mutex_;
  std::condition_variable schedule_cv_;
  std::condition_variable work_cv_;
  std::deque<Job> queue_;
  WorkerSlots slots_;  ///< jobs queued or running
  bool woken_ = false;
  bool stopping_ = false;
  std::thread scheduler_;
  std::vector<std::thread> workers_;
};

}  // namespace fbr::server
