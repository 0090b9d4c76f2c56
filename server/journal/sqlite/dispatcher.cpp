#include "server/journal/sqlite/dispatcher.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <limits>
#include <stdexcept>

#include "core/event.hpp"
#include "core/text.hpp"
#include "server/journal/delivery_log.hpp"
#include "server/support/activity.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {
namespace {

// How often the loop looks for work nobody told it about (a `replay` from the CLI, a retry due).
constexpr std::int64_t kPollMs = 500;

/// The console's `delivery` message for a transition: {"key","log_id","handler","state",
/// "attempts","error"}. Built only while someone listens (the console is open).
void publish_transition(const std::string& log_id, const DeliveryUpdate& u) {
  if (!activity().listening()) return;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  auto put = [&w](const char* key, std::string_view value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  put("key", u.event_key);
  put("log_id", log_id);
  put("handler", u.handler);
  put("state", to_string(u.state));
  w.Key("attempts");
  w.Int(u.attempts);
  put("error", u.last_error);
  w.EndObject();
  activity().publish("delivery", std::string(buffer.GetString(), buffer.GetSize()));
}

/// What an attempt made of its delivery, as its history says it.
std::string_view attempt_outcome(DeliveryState state) {
  switch (state) {
    case DeliveryState::kDone:
      return "done";
    case DeliveryState::kDead:
      return "dead";
    default:
      return "retry";
  }
}

}  // namespace

DeliveryUpdate next_state(const std::string& event_key, const std::string& handler, int attempts,
                          const Outcome& outcome, const core::RetryPolicy& policy,
                          std::int64_t now_ms, double jitter) {
  const core::RetryDecision decision = core::decide_retry(outcome, attempts, policy, jitter);
  DeliveryUpdate u{event_key, handler, DeliveryState::kDone, attempts, 0, decision.error};
  switch (decision.kind) {
    case core::RetryDecision::Kind::kDone:
      break;
    case core::RetryDecision::Kind::kDead:
      u.state = DeliveryState::kDead;
      break;
    case core::RetryDecision::Kind::kRetry:
      u.state = DeliveryState::kFailed;
      u.next_attempt_at_ms = now_ms + decision.delay.count();
      break;
  }
  return u;
}

SqliteDispatcher::SqliteDispatcher(const config::Config& config, SqliteJournal& journal,
                                   Metrics& metrics, const Logger& log)
    : config_(config),
      journal_(journal),
      metrics_(metrics),
      log_(log),
      slots_(config.dispatch_concurrency) {}

SqliteDispatcher::~SqliteDispatcher() {
  stop();
}

std::optional<std::string> SqliteDispatcher::build(const config::Config& config,
                                                   Routes& routes) const {
  return build_routes(config, log_, routes);
}

std::string SqliteDispatcher::room_json() const {
  std::string json;
  for (const auto& [name, route] : routes_) {
    const int room = slots_.room(name, route->concurrency);
    if (room <= 0) continue;
    json += (json.empty() ? "{\"" : ",\"") + core::json_escape(name) + "\":" + std::to_string(room);
  }
  return json.empty() ? json : json + "}";
}

std::optional<std::string> SqliteDispatcher::reload(const config::Config& config) {
  Routes routes;
  if (auto error = build(config, routes)) return error;
  {
    std::lock_guard lock(mutex_);
    routes_.swap(routes);
    woken_ = true;
  }
  schedule_cv_.notify_one();
  return std::nullopt;  // the old routes die here, or with the last delivery still using them
}

std::optional<std::string> SqliteDispatcher::start() {
  if (auto error = build(config_, routes_)) return error;
  journal_.on_new_deliveries([this] { wake(); });
  for (int i = 0; i < config_.dispatch_concurrency; ++i) {
    workers_.emplace_back([this] { worker_loop(); });
  }
  scheduler_ = std::thread([this] { schedule_loop(); });
  log_.info("dispatcher_started", log_.fields()
                                      .add("handlers", static_cast<std::int64_t>(routes_.size()))
                                      .add("concurrency", config_.dispatch_concurrency));
  return std::nullopt;
}

void SqliteDispatcher::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  schedule_cv_.notify_one();
}

void SqliteDispatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  schedule_cv_.notify_all();
  work_cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  for (auto& w : workers_)
    w.join();
  workers_.clear();
  // Marked running but never started: back to pending, as if never picked.
  std::vector<DeliveryUpdate> back;
  for (auto& job : queue_) {
    back.push_back({job.event_key, job.handler, DeliveryState::kPending, job.attempts - 1,
                    job.next_attempt_at_ms, job.last_error});
  }
  queue_.clear();
  if (!back.empty()) persist(std::move(back));
  due_ = {};
  next_due_ = {};
  waiting_ = {};
  db_.close();
}

bool SqliteDispatcher::persist(std::vector<DeliveryUpdate> updates) {
  std::promise<CommitResult> promise;
  auto future = promise.get_future();
  journal_.update(std::move(updates),
                  [&promise](CommitResult r) { promise.set_value(std::move(r)); });
  CommitResult result = future.get();
  if (!result.ok) {
    log_.error("delivery_state_not_saved", log_.fields().add("error", result.error));
  }
  return result.ok;
}

std::optional<std::string> SqliteDispatcher::connect() {
  if (auto e = db_.open(SqliteJournal::file_in(config_.data_dir).string(), false)) return *e;
  sqlite3_busy_timeout(db_.handle(), 5000);
  // ?2 = {"handler": room, ...}: each handler's earliest due rows up to its room, so 100 due
  // downloads at their cap leave the pick to the file delivery behind them.
  if (auto e = due_.prepare(
          db_,
          "WITH room(handler, n) AS (SELECT key, value FROM json_each(?2)), "
          "due AS (SELECT d.event_key, d.handler, d.attempts, d.next_attempt_at, d.last_error, "
          "e.received_at, ROW_NUMBER() OVER (PARTITION BY d.handler "
          "ORDER BY d.next_attempt_at, e.received_at) AS nth "
          "FROM deliveries d JOIN events e ON e.key = d.event_key "
          "WHERE d.state IN ('pending', 'failed') AND d.next_attempt_at <= ?1 "
          "AND d.handler IN (SELECT handler FROM room)) "
          "SELECT due.event_key, due.handler, due.attempts, due.next_attempt_at, due.last_error, "
          "e.log_id, e.attempt_id, e.status, e.body FROM due "
          "JOIN room ON room.handler = due.handler JOIN events e ON e.key = due.event_key "
          "WHERE due.nth <= room.n ORDER BY due.next_attempt_at, due.received_at LIMIT ?3")) {
    due_ = {};
    db_.close();
    return "dispatcher: " + *e;
  }
  if (auto e = next_due_.prepare(
          db_,
          "SELECT MIN(next_attempt_at) FROM deliveries WHERE state IN ('pending', 'failed') "
          "AND handler IN (SELECT key FROM json_each(?1))")) {
    due_ = {};
    db_.close();
    return "dispatcher: " + *e;
  }
  if (auto e = waiting_.prepare(
          db_, "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'failed')")) {
    due_ = {};
    next_due_ = {};
    db_.close();
    return "dispatcher: " + *e;
  }
  return std::nullopt;
}

std::vector<SqliteDispatcher::Job> SqliteDispatcher::fetch_due(const std::string& room, int limit,
                                                               std::int64_t& next_due_ms) {
  std::vector<Job> jobs;
  next_due_ms = std::numeric_limits<std::int64_t>::max();
  if (!db_.is_open()) {
    // The journal could not be opened (read-only or full disk at start): try again next time.
    if (connect()) return jobs;
  }
  const std::int64_t now = unix_ms_now();
  due_.bind(1, now).bind(2, room).bind(3, std::int64_t{limit});
  while (due_.step() == SQLITE_ROW) {
    Job job;
    job.event_key = due_.text(0);
    job.handler = due_.text(1);
    job.attempts = static_cast<int>(due_.integer(2)) + 1;
    job.next_attempt_at_ms = due_.integer(3);
    job.last_error = due_.text(4);
    job.log_id = due_.text(5);
    job.attempt_id = due_.text(6);
    job.status = static_cast<int>(due_.integer(7));
    job.body = due_.text(8);
    jobs.push_back(std::move(job));
  }
  due_.reset();
  // Only handlers with room: a due row of a handler at its cap must not make the loop spin.
  next_due_.bind(1, room);
  if (next_due_.step() == SQLITE_ROW && !next_due_.is_null(0)) next_due_ms = next_due_.integer(0);
  next_due_.reset();
  if (waiting_.step() == SQLITE_ROW) metrics_.deliveries_waiting(waiting_.integer(0));
  waiting_.reset();
  return jobs;
}

void SqliteDispatcher::schedule_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    // Consume the wake-up whether or not a slot is free: a wake left set would make the wait
    // below return at once, forever, holding the lock (and wake() on the journal's writer
    // thread would block on it, stalling every commit).
    woken_ = false;
    const int free = slots_.free();
    const std::string room = free > 0 ? room_json() : std::string();
    std::int64_t next_due_ms = std::numeric_limits<std::int64_t>::max();
    if (!room.empty()) {
      lock.unlock();
      auto jobs = fetch_due(room, free, next_due_ms);
      bool marked = true;
      if (!jobs.empty()) {
        // Persist `running` (and the attempt count) before any handler starts: a crash from here
        // on leaves rows that the next start resumes.
        std::vector<DeliveryUpdate> running;
        for (const auto& job : jobs) {
          running.push_back({job.event_key, job.handler, DeliveryState::kRunning, job.attempts,
                             job.next_attempt_at_ms, job.last_error});
        }
        marked = persist(running);
        if (marked) {
          for (std::size_t i = 0; i < jobs.size(); ++i)
            publish_transition(jobs[i].log_id, running[i]);
        }
      }
      lock.lock();
      if (!jobs.empty() && marked) {
        for (auto& job : jobs) {
          slots_.take(job.handler);
          queue_.push_back(std::move(job));
        }
        work_cv_.notify_all();
        continue;
      }
    }
    std::int64_t wait_ms = kPollMs;
    if (!room.empty() && next_due_ms != std::numeric_limits<std::int64_t>::max()) {
      wait_ms = std::clamp<std::int64_t>(next_due_ms - unix_ms_now(), 0, kPollMs);
    }
    schedule_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                          [this] { return stopping_ || woken_; });
  }
}

void SqliteDispatcher::worker_loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_ || queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::shared_ptr<Route> route;
    {
      std::lock_guard lock(mutex_);
      if (auto it = routes_.find(job.handler); it != routes_.end()) route = it->second;
      metrics_.deliveries_running(slots_.busy());
    }
    if (!route) {
      // Its handler was removed by a reload after the job was queued: leave it as it was.
      persist({{job.event_key, job.handler, DeliveryState::kPending, job.attempts - 1,
                job.next_attempt_at_ms, job.last_error}});
      std::lock_guard lock(mutex_);
      slots_.release(job.handler);
      continue;
    }
    // The one parse of this job's body: the handler reads the model from the delivery.
    const core::ParseResult parsed = core::parse_event(job.body);
    const Delivery delivery{job.event_key, job.log_id,   job.attempt_id, job.status,
                            job.body,      job.attempts, &parsed};
    FinishedAttempt finished{utc_now_iso(), 0, {}};
    const auto started = std::chrono::steady_clock::now();
    Outcome outcome = route->handler->deliver(delivery);
    finished.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - started)
                               .count();
    metrics_.delivery(job.handler, to_string(outcome.kind));
    DeliveryUpdate update = next_state(job.event_key, job.handler, job.attempts, outcome,
                                       route->retry, unix_ms_now(), core::random_fraction());
    finished.outcome = attempt_outcome(update.state);
    update.finished = std::move(finished);
    const DeliveryName name{core::log_id_or_key(job.log_id, job.event_key), job.attempt_id,
                            job.handler};
    if (update.state == DeliveryState::kFailed) {
      log_retry_scheduled(log_, name, job.attempts, update.next_attempt_at_ms - unix_ms_now());
    } else if (update.state == DeliveryState::kDead) {
      log_dead(log_, name, job.attempts, update.last_error);
    }
    if (persist({update})) publish_transition(job.log_id, update);
    {
      std::lock_guard lock(mutex_);
      slots_.release(job.handler);
      woken_ = true;  // a slot is free and a retry time may now be the next due one
    }
    schedule_cv_.notify_one();
  }
}

}  // namespace fbr::server
