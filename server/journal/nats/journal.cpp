#include "server/journal/nats/journal.hpp"

#include <algorithm>

#include "core/text.hpp"
#include "server/journal/nats/stream.hpp"

namespace fbr::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kHeaderRoomBytes = 64 * 1024;
// Async publishes in flight at once; past it a publish waits up to kStallWaitMs, then fails (503).
constexpr std::int64_t kMaxPendingPublishes = 65536;
constexpr std::int64_t kStallWaitMs = 100;

}  // namespace

// ---------------------------------------------------------------------------------------------

NatsJournal::NatsJournal(config::NatsJournal config, std::uint64_t max_body_bytes,
                         const Logger& log)
    : config_(std::move(config)), max_body_bytes_(max_body_bytes), log_(log) {}

NatsJournal::~NatsJournal() {
  stop();
}

std::optional<std::string> NatsJournal::open() {
  std::string error;
  auto options = nats_stream::connection_options(config_, error);
  if (!options) return error;
  connection_ = nats::Connection::open(*options, error);
  if (!connection_) return error;
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.PublishAsync.AckHandler = &NatsJournal::on_ack;
  js_options.PublishAsync.AckHandlerClosure = this;
  js_options.PublishAsync.MaxPending = kMaxPendingPublishes;
  js_options.PublishAsync.StallWait = kStallWaitMs;
  natsStatus s = natsConnection_JetStream(&js_, connection_->get(), &js_options);
  if (s != NATS_OK) return "nats jetstream: " + nats::status_text(s);
  {
    std::lock_guard lock(mutex_);
    last_error_ = "connecting to NATS (" + std::to_string(config_.servers.size()) +
                  (config_.servers.size() == 1 ? " server)" : " servers)");
  }
  maintainer_ = std::thread([this] { maintain(); });
  return std::nullopt;
}

bool NatsJournal::writable() {
  return !stopping_ && connection_ != nullptr && ensured_ && connection_->connected();
}

std::string NatsJournal::unavailable_reason() const {
  if (connection_ == nullptr) return "not opened";
  if (!connection_->connected()) {
    return "not connected to NATS (" + nats_stream::servers_shown(config_) + ")";
  }
  std::lock_guard lock(mutex_);
  return ensured_ ? std::string() : last_error_;
}

void NatsJournal::commit(CommitRequest request, Callback done) {
  using namespace nats_stream;
  if (!writable()) {
    CommitResult result;
    result.error = "NATS journal unavailable: " + unavailable_reason();
    done(std::move(result));
    return;
  }
  nats::Message message;
  const Receipt& r = request.receipt;
  auto add = [&](const char* name, std::string_view value) {
    if (!value.empty()) message.headers.emplace_back(name, header_value(value));
  };
  if (request.quarantine) {
    // An invalid body has no trustworthy key: identical bodies are one quarantined message.
    message.subject = quarantine_subject(config_.subject);
    message.msg_id = "quarantine:sha256:" + core::sha256_hex(request.body);
    add(kErrors, request.errors_json);
  } else {
    message.subject = config_.subject;
    message.msg_id = msg_id_for(request.key);
    add(kEventKey, request.key);
    add(kLogId, request.log_id);
    add(kStatus, std::to_string(request.status));
    add(kOutputCount, std::to_string(request.output_count));
    if (request.test) add(kTest, *request.test ? "true" : "false");
    add(kHandlers, handlers_value(request.handlers));
  }
  add(kReceivedAt, r.received_at);
  add(kAttemptId, r.attempt_id);
  add(kRemoteAddr, r.remote_addr);
  add(kRequestId, r.request_id);
  // The body is copied into libnats's message before publish() returns, then freed with request.
  message.body = request.body;
  publish(std::move(message), std::move(done));
}

void NatsJournal::publish(nats::Message message, Callback done) {
  std::string error;
  natsMsg* msg = nats::make_msg(message, error);
  if (msg == nullptr) {
    CommitResult result;
    result.error = error;
    done(std::move(result));
    return;
  }
  natsMsg* const id = msg;  // the ack handler gets this same pointer back
  {
    std::lock_guard lock(mutex_);
    pending_.emplace(id, Pending{std::move(done),
                                 Clock::now() + std::chrono::milliseconds(kAckTimeoutMs + 1000)});
  }
  jsPubOptions options;
  jsPubOptions_Init(&options);
  options.MaxWait = kAckTimeoutMs;  // libnats reports a missing ack as NATS_TIMEOUT
  options.ExpectStream = config_.stream.c_str();
  const natsStatus s = js_PublishMsgAsync(js_, &msg, &options);
  if (s != NATS_OK) {
    CommitResult result;
    result.error = "JetStream publish to " + message.subject + " (stream " + config_.stream + ", " +
                   nats::connected_url(connection_->get()) + "): " + nats::status_text(s);
    natsMsg_Destroy(msg);  // no-op when libnats took it
    Callback callback;
    {
      std::lock_guard lock(mutex_);
      if (auto it = pending_.find(id); it != pending_.end()) {
        callback = std::move(it->second.done);
        pending_.erase(it);
      }
    }
    if (callback) callback(std::move(result));
  }
}

void NatsJournal::on_ack(jsCtx*, natsMsg* msg, jsPubAck* ack, jsPubAckErr* error, void* closure) {
  auto* self = static_cast<NatsJournal*>(closure);
  CommitResult result;
  if (ack != nullptr) {
    result.ok = true;
    result.duplicate = ack->Duplicate;
  } else {
    const char* subject = msg != nullptr ? natsMsg_GetSubject(msg) : nullptr;
    result.error = "JetStream did not acknowledge the publish to " +
                   std::string(subject != nullptr ? subject : "?") + " (stream " +
                   self->config_.stream + ", " + nats::connected_url(self->connection_->get()) +
                   ")";
    if (error != nullptr) {
      if (error->Err == NATS_TIMEOUT) {
        result.error += ": no acknowledgement within " + std::to_string(kAckTimeoutMs) + " ms";
      } else {
        result.error += ": " + std::string(natsStatus_GetText(error->Err));
        if (error->ErrText != nullptr && *error->ErrText != '\0')
          result.error += ": " + std::string(error->ErrText);
        result.error += nats_stream::js_code(error->ErrCode);
      }
      // No responders: the stream is gone or JetStream is not up (yet): ensure it again.
      if (error->Err == NATS_NO_RESPONDERS) {
        self->ensured_ = false;
        self->wake_.notify_one();
      }
    }
  }
  self->finish(msg, std::move(result));
  natsMsg_Destroy(msg);
}

void NatsJournal::finish(natsMsg* msg, CommitResult result) {
  Callback callback;
  {
    std::lock_guard lock(mutex_);
    if (auto it = pending_.find(msg); it != pending_.end()) {
      callback = std::move(it->second.done);
      pending_.erase(it);
    }
  }
  if (callback) callback(std::move(result));  // else: already failed by fail_expired
}

void NatsJournal::fail_expired(bool all, const std::string& why) {
  std::vector<Callback> expired;
  {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (all || it->second.deadline <= now) {
        expired.push_back(std::move(it->second.done));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& done : expired) {
    CommitResult result;
    result.error = why;
    done(std::move(result));
  }
}

void NatsJournal::maintain() {
  bool was_connected = false;
  std::string server;  // the last one connected to, for the disconnect line
  std::string logged_error;
  auto retry_at = Clock::now();
  auto backoff = std::chrono::milliseconds(250);
  while (!stopping_) {
    const bool connected = connection_->connected();
    if (connected != was_connected) {
      if (connected) {
        server = nats::connected_url(connection_->get());
        log_.info("nats_connected", log_.fields().add("server", server));
        // Headers and protocol need a little room besides the body.
        const auto max_payload = natsConnection_GetMaxPayload(connection_->get());
        if (max_payload > 0 &&
            static_cast<std::uint64_t>(max_payload) < max_body_bytes_ + kHeaderRoomBytes) {
          log_.warn("nats_max_payload_too_small",
                    log_.fields()
                        .add("server", server)
                        .add("max_payload", static_cast<std::int64_t>(max_payload))
                        .add("max_body_bytes", max_body_bytes_)
                        .add("effect",
                             "larger events get 503: raise max_payload in "
                             "nats-server's configuration (at most 64 MB)"));
        }
      } else {
        log_.error("nats_disconnected",
                   log_.fields().add("server", server).add("stream", config_.stream));
      }
      was_connected = connected;
    }
    if (connected && !ensured_ && Clock::now() >= retry_at) {
      if (auto error = nats_stream::ensure_stream(*connection_, config_)) {
        {
          std::lock_guard lock(mutex_);
          last_error_ = *error;
        }
        if (*error != logged_error)
          log_.error("nats_stream_unavailable", log_.fields().add("error", *error));
        logged_error = *error;
        retry_at = Clock::now() + backoff;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      } else {
        ensured_ = true;
        logged_error.clear();
        backoff = std::chrono::milliseconds(250);
        log_.info("nats_stream_ready", log_.fields()
                                           .add("stream", config_.stream)
                                           .add("subject", config_.subject)
                                           .add("replicas", config_.replicas)
                                           .add("server", nats::connected_url(connection_->get())));
      }
    }
    // A lost ack (libnats reports a timeout itself; this is the backstop) must not hang a request.
    fail_expired(false, "no acknowledgement from JetStream stream " + config_.stream + " within " +
                            std::to_string(kAckTimeoutMs) + " ms");
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_.load(); });
  }
}

void NatsJournal::stop() {
  if (stopping_.exchange(true)) return;
  wake_.notify_all();
  if (maintainer_.joinable()) maintainer_.join();
  if (js_ != nullptr && connection_ != nullptr && connection_->connected()) {
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MaxWait = kAckTimeoutMs;
    js_PublishAsyncComplete(js_, &options);  // the acks of requests still being answered
  }
  fail_expired(true, "the receiver is stopping");
  if (connection_ != nullptr) connection_->close();
  if (js_ != nullptr) {
    jsCtx_Destroy(js_);
    js_ = nullptr;
  }
  // connection_ lives until the destructor: a late ack handler may still look at it.
}

}  // namespace fbr::server
