#include "server/journal/nats/dispatcher.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "core/event.hpp"
#include "server/journal/delivery_log.hpp"

namespace fbr::server {
namespace {

using std::chrono::milliseconds;

// How long one fetch waits for a message: also how long stop() and a reload wait for a loop.
constexpr std::int64_t kFetchWaitMs = 1000;
constexpr milliseconds kMinAckWait{5000};
constexpr milliseconds kMaxAckWait{30000};
// Ack-pending bounds the messages one consumer has out at once, those waiting out a retry delay
// included (a nak'ed message stays pending until redelivered).
constexpr std::int64_t kMaxAckPending = 10000;
constexpr int kPublishTimeoutMs = 10000;

/// The outcome an attempt is recorded with: what was decided (a retry past max_attempts is dead).
core::Outcome::Kind decision_outcome(core::RetryDecision::Kind kind) {
  switch (kind) {
    case core::RetryDecision::Kind::kDone:
      return core::Outcome::Kind::kDone;
    case core::RetryDecision::Kind::kRetry:
      return core::Outcome::Kind::kRetry;
    case core::RetryDecision::Kind::kDead:
      break;
  }
  return core::Outcome::Kind::kDead;
}

}  // namespace

milliseconds nats_ack_wait(const core::RetryPolicy& policy) {
  return std::clamp(milliseconds(policy.initial_backoff_ms), kMinAckWait, kMaxAckWait);
}

// ---------------------------------------------------------------------------------------------

/// One fetch loop: a handler's events consumer or its replay consumer.
struct NatsDispatcher::Fetcher {
  std::string handler;
  bool replay = false;
  std::string durable;
  std::string filter;
  core::RetryPolicy retry;  // guarded by mutex_
  bool reconfigure = true;  // guarded by mutex_: (re)create the consumer before the next fetch
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  std::uint64_t pending = 0;  // guarded by mutex_: NumPending of the last message fetched
  milliseconds ack_wait{kMinAckWait};
  std::thread thread;
};

/// A pull subscription, destroyed once neither its fetch loop nor any message it fetched needs it:
/// libnats acks a message through its subscription, so destroying it under a running delivery
/// would leave the delivery's ack pointing at freed memory.
struct Subscription {
  natsSubscription* sub = nullptr;
  explicit Subscription(natsSubscription* s) : sub(s) {}
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  // Destroy only: the consumer is durable and bound, so nothing is deleted on the server.
  ~Subscription() { natsSubscription_Destroy(sub); }
};

/// A fetched message, queued or running. Everything read from the message is read by the
/// fetcher, before the keeper may send InProgress for it.
struct NatsDispatcher::Job {
  std::shared_ptr<Subscription> subscription;  // outlives msg (see ~Job)
  natsMsg* msg = nullptr;
  std::string handler;
  bool replay = false;
  nats_stream::EventHeaders headers;
  int attempt = 1;  // NumDelivered
  std::uint64_t sequence = 0;
  milliseconds progress_every{kMinAckWait / 3};
  std::chrono::steady_clock::time_point progress_at = std::chrono::steady_clock::now();

  Job() = default;
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
  ~Job() { natsMsg_Destroy(msg); }
  [[nodiscard]] std::string_view body() const {
    return {natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))};
  }
};

NatsDispatcher::NatsDispatcher(const config::Config& config, Metrics& metrics, const Logger& log,
                               std::shared_ptr<NatsHistory> history)
    : config_(config),
      metrics_(metrics),
      log_(log),
      history_(history != nullptr ? std::move(history) : std::make_shared<NatsHistory>()),
      fetched_(config.dispatch_concurrency),
      running_(config.dispatch_concurrency) {}

int NatsDispatcher::cap_of(const std::string& handler) const {
  const auto it = routes_.find(handler);
  return it == routes_.end() ? 0 : it->second->concurrency;
}

std::deque<std::shared_ptr<NatsDispatcher::Job>>::iterator NatsDispatcher::startable() {
  return std::find_if(queue_.begin(), queue_.end(), [this](const std::shared_ptr<Job>& job) {
    // A removed handler's job starts at once: run() gives it back to the consumer.
    const int cap = cap_of(job->handler);
    return cap == 0 || running_.room(job->handler, cap) > 0;
  });
}

NatsDispatcher::~NatsDispatcher() {
  stop();
}

std::optional<std::string> NatsDispatcher::build(const config::Config& config,
                                                 Routes& routes) const {
  std::map<std::string, std::string> consumers;  // consumer name -> handler
  for (const auto& h : config.handlers) {
    const auto consumer = nats_stream::consumer_name(h.name, false);
    if (auto [it, fresh] = consumers.emplace(consumer, h.name); !fresh) {
      return "handlers " + it->second + " and " + h.name + " would share the NATS consumer " +
             consumer + ": rename one";
    }
  }
  return build_routes(config, log_, routes);
}

std::optional<std::string> NatsDispatcher::start() {
  const auto& nats = config_.journal.nats;
  if (nats.servers.empty()) return "journal.nats.servers: at least one server is required";
  Routes routes;
  if (auto error = build(config_, routes)) return error;
  std::string error;
  auto options = nats_stream::connection_options(nats, error);
  if (!options) return error;
  options->name = "fhir-bulk-receiver dispatcher";
  connection_ = nats::Connection::open(*options, error);
  if (!connection_) return error;
  std::lock_guard lock(mutex_);
  routes_ = std::move(routes);
  started_ = true;
  for (int i = 0; i < config_.dispatch_concurrency; ++i) {
    workers_.emplace_back([this] { worker_loop(); });
  }
  keeper_ = std::thread([this] { keeper_loop(); });
  sync_fetchers();
  log_.info("dispatcher_started", log_.fields()
                                      .add("backend", "nats")
                                      .add("handlers", static_cast<std::int64_t>(routes_.size()))
                                      .add("concurrency", config_.dispatch_concurrency)
                                      .add("stream", nats.stream)
                                      .add("subject", nats.subject));
  return std::nullopt;
}

std::optional<std::string> NatsDispatcher::reload(const config::Config& config) {
  Routes routes;
  if (auto error = build(config, routes)) return error;
  {
    std::lock_guard lock(mutex_);
    routes_.swap(routes);
    if (started_ && !stopping_) sync_fetchers();
  }
  slot_cv_.notify_all();
  work_cv_.notify_all();  // new caps may let a queued job start
  return std::nullopt;    // the old routes die here, or with the last delivery still using them
}

void NatsDispatcher::sync_fetchers() {
  // Reap loops that have ended (they were told to stop by an earlier reload).
  for (auto it = fetchers_.begin(); it != fetchers_.end();) {
    if ((*it)->done) {
      (*it)->thread.join();
      it = fetchers_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& f : fetchers_) {
    if (f->stop) continue;
    const auto route = routes_.find(f->handler);
    if (route == routes_.end()) {
      f->stop = true;  // its durable consumer stays: a handler added back resumes where it was
      log_.info("dispatcher_consumer_stopped",
                log_.fields().add("handler", f->handler).add("consumer", f->durable));
      continue;
    }
    const auto& retry = route->second->retry;
    if (retry.max_attempts != f->retry.max_attempts ||
        retry.initial_backoff_ms != f->retry.initial_backoff_ms ||
        retry.max_backoff_ms != f->retry.max_backoff_ms) {
      f->retry = retry;
      f->reconfigure = true;
    }
  }
  for (const auto& [name, route] : routes_) {
    for (const bool replay : {false, true}) {
      // An init-capture: clang 14 (the fuzz preset) cannot capture a structured binding.
      const bool running =
          std::any_of(fetchers_.begin(), fetchers_.end(), [&handler = name, replay](const auto& f) {
            return !f->stop && f->handler == handler && f->replay == replay;
          });
      if (running) continue;
      auto f = std::make_unique<Fetcher>();
      f->handler = name;
      f->replay = replay;
      f->durable = nats_stream::consumer_name(name, replay);
      f->filter = replay ? nats_stream::replay_subject(config_.journal.nats.subject, name)
                         : config_.journal.nats.subject;
      f->retry = route->retry;
      Fetcher& ref = *f;
      fetchers_.push_back(std::move(f));
      ref.thread = std::thread([this, &ref] { fetch_loop(ref); });
    }
  }
}

bool NatsDispatcher::pause(const Fetcher& fetcher, milliseconds wait) {
  std::unique_lock lock(mutex_);
  slot_cv_.wait_for(lock, wait, [&] { return stopping_ || fetcher.stop; });
  return !stopping_ && !fetcher.stop;
}

std::optional<std::string> NatsDispatcher::ensure_consumer(Fetcher& f, natsSubscription** sub) {
  core::RetryPolicy retry;
  {
    std::lock_guard lock(mutex_);
    retry = f.retry;
    f.reconfigure = false;
  }
  const auto& stream = config_.journal.nats.stream;
  const milliseconds ack_wait = nats_ack_wait(retry);
  const std::string description =
      std::string(f.replay ? "replays" : "events") + " for handler " + f.handler;
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = f.durable.c_str();
  cc.Description = description.c_str();
  cc.AckPolicy = js_AckExplicit;
  cc.DeliverPolicy = js_DeliverAll;
  cc.FilterSubject = f.filter.c_str();
  cc.AckWait = static_cast<std::int64_t>(ack_wait.count()) * 1'000'000;
  cc.MaxDeliver = -1;  // attempts are counted here (see the header)
  cc.MaxAckPending = kMaxAckPending;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_AddConsumer(nullptr, connection_->js(), stream.c_str(), &cc, nullptr, &code);
  if (s != NATS_OK && code != JSStreamNotFoundErr) {
    // An existing consumer with other settings (an older retry policy): bring it up to date.
    const std::string add_error = nats::status_text(s);
    code = static_cast<jsErrCode>(0);
    s = js_UpdateConsumer(nullptr, connection_->js(), stream.c_str(), &cc, nullptr, &code);
    if (s != NATS_OK) return "consumer " + f.durable + " on stream " + stream + ": " + add_error;
  }
  if (s != NATS_OK) {
    return "consumer " + f.durable + " on stream " + stream + ": " + nats::status_text(s) +
           (code == JSStreamNotFoundErr ? " (no stream " + stream + " yet)" : "");
  }
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Consumer = f.durable.c_str();
  code = static_cast<jsErrCode>(0);
  s = js_PullSubscribe(sub, connection_->js(), f.filter.c_str(), f.durable.c_str(), nullptr, &so,
                       &code);
  if (s != NATS_OK) {
    *sub = nullptr;
    return "pull subscription to " + f.durable + ": " + nats::status_text(s);
  }
  f.ack_wait = ack_wait;
  return std::nullopt;
}

void NatsDispatcher::fetch_loop(Fetcher& f) {
  std::shared_ptr<Subscription> sub;
  auto drop = [&sub] { sub.reset(); };
  std::string last_error;  // logged when it changes, not once per retry
  auto fail = [&](const std::string& error) {
    if (error != last_error) {
      log_.warn(
          "dispatcher_consumer_unavailable",
          log_.fields().add("handler", f.handler).add("consumer", f.durable).add("error", error));
    }
    last_error = error;
  };
  for (;;) {
    bool reconfigure = false;
    {
      std::unique_lock lock(mutex_);
      // Two loops (events, replay) share a handler's room: one may fetch past it, but no
      // worker starts more than the cap (startable()).
      slot_cv_.wait(lock, [&] {
        return stopping_ || f.stop || fetched_.room(f.handler, cap_of(f.handler)) > 0;
      });
      if (stopping_ || f.stop) break;
      reconfigure = f.reconfigure;
    }
    if (sub != nullptr && reconfigure) drop();
    if (sub == nullptr) {
      if (!connection_->connected()) {
        fail("not connected to NATS");
        if (!pause(f, milliseconds(500))) break;
        continue;
      }
      natsSubscription* created = nullptr;
      if (auto error = ensure_consumer(f, &created)) {
        fail(*error);
        if (!pause(f, milliseconds(2000))) break;
        continue;
      }
      sub = std::make_shared<Subscription>(created);
      log_.info("dispatcher_consumer_ready",
                log_.fields()
                    .add("handler", f.handler)
                    .add("consumer", f.durable)
                    .add("filter", f.filter)
                    .add("ack_wait_ms", static_cast<std::int64_t>(f.ack_wait.count())));
      last_error.clear();
    }
    natsMsgList list{nullptr, 0};
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus s = natsSubscription_Fetch(&list, sub->sub, 1, kFetchWaitMs, &code);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK) {
      fail("fetch from " + f.durable + ": " + nats::status_text(s));
      // Reconnecting: the subscription comes back by itself. Connected: the consumer may be
      // gone (deleted, or a new NATS without it): create it again.
      if (connection_->connected()) drop();
      if (!pause(f, milliseconds(1000))) break;
      continue;
    }
    std::vector<std::shared_ptr<Job>> jobs;
    for (int i = 0; i < list.Count; ++i) {
      auto job = std::make_shared<Job>();
      job->subscription = sub;
      job->msg = std::exchange(list.Msgs[i], nullptr);
      job->handler = f.handler;
      job->replay = f.replay;
      job->headers = nats_stream::read_event_headers(job->msg);
      job->progress_every = f.ack_wait / 3;
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, job->msg) == NATS_OK) {
        job->attempt = static_cast<int>(std::min<std::uint64_t>(meta->NumDelivered, 1'000'000));
        job->sequence = meta->Sequence.Stream;
        std::lock_guard lock(mutex_);
        f.pending = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
      }
      jobs.push_back(std::move(job));
    }
    natsMsgList_Destroy(&list);
    {
      std::lock_guard lock(mutex_);
      for (auto& job : jobs) {
        if (stopping_ || f.stop) {
          // Fetched while stopping (or its handler was removed): straight back to the consumer.
          natsMsg_Nak(job->msg, nullptr);
          continue;
        }
        fetched_.take(job->handler);
        in_flight_.push_back(job);
        queue_.push_back(std::move(job));
      }
      std::uint64_t waiting = queue_.size();
      for (const auto& other : fetchers_)
        waiting += other->pending;
      metrics_.deliveries_waiting(static_cast<std::int64_t>(waiting));
    }
    work_cv_.notify_one();
  }
  f.done = true;
}

void NatsDispatcher::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      auto next = queue_.end();
      work_cv_.wait(lock, [&] { return stopping_ || (next = startable()) != queue_.end(); });
      if (stopping_) return;
      job = std::move(*next);
      queue_.erase(next);
      running_.take(job->handler);
      metrics_.deliveries_running(running_.busy());
    }
    run(*job);
    {
      std::lock_guard lock(mutex_);
      running_.release(job->handler);
      fetched_.release(job->handler);
      metrics_.deliveries_running(running_.busy());
    }
    slot_cv_.notify_all();
    work_cv_.notify_all();  // a job held back by its handler's cap may start now
  }
}

void NatsDispatcher::forget(const Job& job) {
  std::lock_guard lock(mutex_);
  in_flight_.remove_if([&](const auto& j) { return j.get() == &job; });
}

void NatsDispatcher::run(Job& job) {
  const auto& h = job.headers;
  const std::string key = nats_stream::key_of(h, job.sequence);
  const std::string_view shown = core::log_id_or_key(h.log_id, key);
  const DeliveryName name{shown, h.attempt_id, job.handler};
  std::shared_ptr<Route> route;
  {
    std::lock_guard lock(mutex_);
    if (auto it = routes_.find(job.handler); it != routes_.end()) route = it->second;
  }
  if (!route) {
    // Removed by a reload after it was fetched: back to the consumer, untouched.
    forget(job);
    natsMsg_Nak(job.msg, nullptr);
    return;
  }
  if (!job.replay && !nats_stream::lists_handler(h.handlers, job.handler)) {
    // Its `when` did not match at ingest (or the handler is newer than the event).
    forget(job);
    natsMsg_Ack(job.msg, nullptr);
    log_.debug("delivery_skipped", log_.fields().add("log_id", shown).add("handler", job.handler));
    return;
  }
  if (core::attempts_exhausted(route->retry, job.attempt - 1)) {
    // Delivered again after the last allowed attempt: that attempt never reported (its receiver
    // stopped, or an ack or a dead letter was lost). Dead, without running once more.
    const std::string error = "gave up after " + std::to_string(job.attempt - 1) +
                              " attempts: the last one did not report an outcome";
    log_dead(log_, name, job.attempt - 1, error);
    history_->gave_up(key, h.log_id, job.handler, job.attempt - 1, error);
    forget(job);
    dead_letter(job, error, job.attempt - 1, route->retry);
    return;
  }
  // The one parse of this job's body: the handler reads the model from the delivery.
  const core::ParseResult parsed = core::parse_event(job.body());
  const Delivery delivery{key, h.log_id, h.attempt_id, h.status, job.body(), job.attempt, &parsed};
  history_->started(key, h.log_id, job.handler, job.attempt);
  const auto started = std::chrono::steady_clock::now();
  const Outcome outcome = route->handler->deliver(delivery);
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - started);
  metrics_.delivery(job.handler, to_string(outcome.kind));
  const core::RetryDecision decision =
      core::decide_retry(outcome, job.attempt, route->retry, core::random_fraction());
  history_->finished(key, h.log_id, job.handler, job.attempt, took.count(),
                     std::string(core::to_string(decision_outcome(decision.kind))), decision.error,
                     decision.kind == core::RetryDecision::Kind::kRetry
                         ? unix_ms_now() + decision.delay.count()
                         : 0);
  forget(job);
  switch (decision.kind) {
    case core::RetryDecision::Kind::kDone: {
      jsErrCode code = static_cast<jsErrCode>(0);
      // Synchronous: "done" is recorded by JetStream before the worker moves on.
      const natsStatus s = natsMsg_AckSync(job.msg, nullptr, &code);
      if (s != NATS_OK) {
        log_.error("delivery_ack_failed", log_.fields()
                                              .add("log_id", shown)
                                              .add("attempt_id", h.attempt_id)
                                              .add("handler", job.handler)
                                              .add("error", nats::status_text(s)));
      }
      break;
    }
    case core::RetryDecision::Kind::kRetry:
      log_retry_scheduled(log_, name, job.attempt,
                          static_cast<std::int64_t>(decision.delay.count()));
      natsMsg_NakWithDelay(job.msg, decision.delay.count(), nullptr);
      break;
    case core::RetryDecision::Kind::kDead:
      log_dead(log_, name, job.attempt, decision.error);
      dead_letter(job, decision.error, job.attempt, route->retry);
      break;
  }
}

void NatsDispatcher::dead_letter(Job& job, const std::string& error, int attempts,
                                 const core::RetryPolicy& retry) {
  const std::string key = nats_stream::key_of(job.headers, job.sequence);
  const nats::Message m =
      nats_stream::dead_letter(config_.journal.nats.subject, job.msg, job.headers, key,
                               job.sequence, job.handler, error, attempts);
  const auto result =
      nats::publish_sync(*connection_, m, kPublishTimeoutMs, config_.journal.nats.stream);
  if (result.ok) {
    natsMsg_Term(job.msg, nullptr);
    return;
  }
  // Not kept anywhere yet: try again later (the next delivery sees the attempts spent and comes
  // straight back here).
  const auto delay = std::min<std::int64_t>(retry.max_backoff_ms, kMaxAckWait.count());
  log_.error("dead_letter_failed", log_.fields()
                                       .add("log_id", core::log_id_or_key(job.headers.log_id, key))
                                       .add("handler", job.handler)
                                       .add("subject", m.subject)
                                       .add("error", result.error)
                                       .add("next_in_ms", delay));
  natsMsg_NakWithDelay(job.msg, delay, nullptr);
}

void NatsDispatcher::keeper_loop() {
  std::unique_lock lock(mutex_);
  while (!keeper_stopping_) {
    keeper_cv_.wait_for(lock, milliseconds(250), [this] { return keeper_stopping_; });
    const auto now = std::chrono::steady_clock::now();
    for (const auto& job : in_flight_) {
      if (now - job->progress_at < job->progress_every) continue;
      // Not acknowledged yet, but alive: JetStream restarts the job's AckWait.
      natsMsg_InProgress(job->msg, nullptr);
      job->progress_at = now;
    }
  }
}

void NatsDispatcher::stop() {
  std::list<std::unique_ptr<Fetcher>> fetchers;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || !started_) {
      stopping_ = true;
      return;
    }
    stopping_ = true;
  }
  slot_cv_.notify_all();
  work_cv_.notify_all();
  {
    std::lock_guard lock(mutex_);
    fetchers.swap(fetchers_);
  }
  for (auto& f : fetchers)
    f->thread.join();
  for (auto& w : workers_)
    w.join();
  workers_.clear();
  {
    std::lock_guard lock(mutex_);
    // Fetched but never started: nak'ed without delay, so another instance runs them now.
    for (auto& job : queue_)
      natsMsg_Nak(job->msg, nullptr);
    queue_.clear();
    in_flight_.clear();
    keeper_stopping_ = true;
  }
  keeper_cv_.notify_all();
  if (keeper_.joinable()) keeper_.join();
  connection_->close(2000);  // flushes the acks and naks above
  {
    std::lock_guard lock(mutex_);
    routes_.clear();
  }
  log_.info("dispatcher_stopped", log_.fields().add("backend", "nats"));
}

}  // namespace fbr::server
