#pragma once
// Runs handlers when the journal is NATS JetStream (journal.backend "nats"). Each handler has two
// durable pull consumers on the journal's stream (nats/stream.hpp), shared by name by every
// receiver instance: "fbr-<name>" on the events subject and "fbr-<name>-replay" on
// <subject>.replay.<name>. JetStream hands each message to one instance at a time, so any
// instance may run any delivery; the message's own ack state is the delivery state (ack = done,
// nak with delay = retry later, term after a dead letter on <subject>.dead.<name> = dead).
//
// Consumer settings, and why they differ from the obvious ones:
// - No BackOff list: nats-server 2.9 adds BackOff[n] - AckWait to every NakWithDelay (a 1 s
//   retry after the 2nd delivery came back after 8 s with BackOff [3 s, 10 s]). Every retry is a
//   NakWithDelay with the delay core::decide_retry computes (exponential, jittered, Retry-After
//   honoured), exactly as the SQLite dispatcher schedules it.
// - MaxDeliver unlimited: the receiver counts attempts itself (the message's NumDelivered). A
//   message delivered more than max_attempts times (its last attempt never reported: an instance
//   died, or an ack was lost) is dead-lettered without running again, and a dead-letter publish
//   that fails is retried later; JetStream never drops a message silently.
// - AckWait: the first back-off delay, within [5 s, 30 s]; a running delivery sends
//   InProgress every AckWait / 3, so a long download is not redelivered elsewhere.
//
// Fair workers: a handler's fetch loops fetch only while that handler has fewer than its
// `concurrency` messages queued or running (and the pool has room), and a worker starts only a
// queued message whose handler runs fewer than its `concurrency`: a handler that hangs holds at
// most its own share of the `dispatch.concurrency` workers.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "core/retry.hpp"
#include "server/handlers/handler.hpp"
#include "server/journal/dispatcher.hpp"
#include "server/journal/nats/history.hpp"
#include "server/journal/nats/stream.hpp"
#include "server/journal/worker_slots.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {

/// A consumer's AckWait for this retry policy: the first back-off ceiling within [5 s, 30 s].
std::chrono::milliseconds nats_ack_wait(const core::RetryPolicy& policy);

class NatsDispatcher final : public Dispatcher {
 public:
  /// `config` is the start-up snapshot: journal.nats and concurrency stay; handlers can be
  /// reloaded. Each attempt's start and end go to `history` (the console's record of what ran
  /// here, which also publishes the live `delivery` transitions); null: a record of its own.
  NatsDispatcher(const config::Config& config, Metrics& metrics, const Logger& log,
                 std::shared_ptr<NatsHistory> history = nullptr);
  ~NatsDispatcher() override;

  /// Builds every handler (errors name the handler), connects to NATS (in the background: an
  /// unreachable server is not an error, the consumers wait for it) and starts the workers.
  std::optional<std::string> start() override;

  /// Replaces the handlers (SIGHUP). Builds every new handler first: on any error nothing changes.
  /// New handlers get their consumers; removed handlers' fetch loops stop (their durable consumers
  /// stay in the stream); running deliveries finish on the handler they started with.
  std::optional<std::string> reload(const config::Config& config) override;

  /// Stops fetching; running deliveries finish and ack or nak; fetched messages that had not
  /// started are nak'ed so another instance takes them at once.
  void stop() override;

 private:
  struct Fetcher;
  struct Job;

  std::optional<std::string> build(const config::Config& config, Routes& routes) const;
  /// Starts fetch loops for handlers in routes_ that have none; stops those of removed handlers.
  void sync_fetchers();  // mutex_ held
  void fetch_loop(Fetcher& fetcher);
  std::optional<std::string> ensure_consumer(Fetcher& fetcher, natsSubscription** sub);
  void worker_loop();
  void keeper_loop();
  void run(Job& job);
  void dead_letter(Job& job, const std::string& error, int attempts,
                   const core::RetryPolicy& retry);
  /// Waits up to `wait` or until stopping (or the fetcher is told to stop): false when stopping.
  bool pause(const Fetcher& fetcher, std::chrono::milliseconds wait);
  void forget(const Job& job);
  /// The handler's `concurrency`, 0 when it is no longer configured (mutex_ held).
  int cap_of(const std::string& handler) const;
  /// The first queued job a worker may start now (its handler below its cap), or end (mutex_ held).
  std::deque<std::shared_ptr<Job>>::iterator startable();

  const config::Config& config_;
  Metrics& metrics_;
  const Logger& log_;
  std::shared_ptr<NatsHistory> history_;
  std::unique_ptr<nats::Connection> connection_;

  std::mutex mutex_;
  std::condition_variable work_cv_;  // a job was queued, or stopping
  std::condition_variable slot_cv_;  // a slot freed, or stopping / a fetcher told to stop
  Routes routes_;                    // guarded by mutex_
  std::list<std::unique_ptr<Fetcher>> fetchers_;  // guarded by mutex_ (running and retired)
  std::deque<std::shared_ptr<Job>> queue_;        // fetched, not started
  std::list<std::shared_ptr<Job>> in_flight_;     // queued or running: InProgress is sent for them
  WorkerSlots fetched_;                           // queued + running, per handler
  WorkerSlots running_;                           // running, per handler
  bool started_ = false;
  bool stopping_ = false;
  bool keeper_stopping_ = false;
  std::condition_variable keeper_cv_;
  std::vector<std::thread> workers_;
  std::thread keeper_;
};

}  // namespace fbr::server
