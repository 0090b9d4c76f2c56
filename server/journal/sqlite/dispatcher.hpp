#pragma once
// Runs handlers after the 200: a loop over due delivery rows (pending, or failed and due again),
// at most `dispatch.concurrency` at once on worker threads, and at most a handler's own
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
#include "core/backoff.hpp"
#include "server/handlers/handler.hpp"
#include "server/journal/sqlite/database.hpp"
#include "server/journal/sqlite/journal.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {

/// The persisted state that follows an attempt's outcome (pure: retry arithmetic from core).
DeliveryUpdate next_state(const std::string& event_key, const std::string& handler, int attempts,
                          const Outcome& outcome, const core::RetryPolicy& policy,
                          std::int64_t now_ms, double jitter);

/// The dispatcher's workers and who holds them: at most `pool` deliveries at once, and at most a
/// handler's `concurrency` of that handler, so one handler that hangs cannot hold every worker.
/// Both dispatchers (SQLite, NATS) count with it; not thread-safe (their mutex guards it).
class WorkerSlots {
 public:
  explicit WorkerSlots(int pool) : pool_(pool) {}
  /// How many more deliveries may start now, whatever their handler.
  [[nodiscard]] int free() const { return pool_ - busy_; }
  /// How many more deliveries of `handler`, allowed `cap` at once, may start now.
  [[nodiscard]] int room(const std::string& handler, int cap) const;
  [[nodiscard]] int busy() const { return busy_; }
  [[nodiscard]] int busy(const std::string& handler) const;
  /// A delivery of `handler` was queued (its slot is held until release).
  void take(const std::string& handler);
  void release(const std::string& handler);

 private:
  int pool_;
  int busy_ = 0;
  std::map<std::string, int> by_handler_;  // only handlers with a delivery queued or running
};

class Dispatcher {
 public:
  /// `config` is the start-up snapshot: data_dir and concurrency stay; handlers can be reloaded.
  Dispatcher(const config::Config& config, Journal& journal, Metrics& metrics, const Logger& log);
  ~Dispatcher();

  /// Builds every configured handler (errors name the handler) and starts the loop and workers.
  std::optional<std::string> start();

  /// New deliveries were committed: look now rather than at the next poll.
  void wake();

  /// Replaces the handlers (SIGHUP). Builds every new handler first: on any error nothing
  /// changes and the error (naming the handler) is returned. Running deliveries finish on the
  /// handler they started with.
  std::optional<std::string> reload(const config::Config& config);

  /// Stops scheduling, lets running deliveries finish and record their outcome; queued ones that
  /// had not started go back to pending.
  void stop();

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
  Journal& journal_;
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
