#include "server/journal/nats/journal.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "core/text.hpp"
#include "core/url.hpp"

namespace fbr::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxMsgIdBytes = 512;
constexpr std::uint64_t kHeaderRoomBytes = 64 * 1024;
// Async publishes in flight at once; past it a publish waits up to kStallWaitMs, then fails (503).
constexpr std::int64_t kMaxPendingPublishes = 65536;
constexpr std::int64_t kStallWaitMs = 100;

bool is_control(char c) {
  return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}

std::string js_error(natsStatus status, jsErrCode code) {
  std::string text = nats::status_text(status);
  if (code != 0) text += " (JetStream error code " + std::to_string(static_cast<int>(code)) + ")";
  return text;
}

std::int64_t seconds_to_ns(std::uint32_t seconds) {
  return static_cast<std::int64_t>(seconds) * 1'000'000'000;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names

namespace nats_names {

std::string consumer_name(std::string_view handler) {
  std::string out = "fbr-";
  for (const char c : handler) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    out += ok ? c : '_';
  }
  return out;
}

std::string quarantine_subject(const config::NatsJournal& config) {
  return config.subject + ".quarantine";
}
std::string dead_subject(const config::NatsJournal& config, std::string_view handler) {
  return config.subject + ".dead." + std::string(handler);
}
std::string replay_subject(const config::NatsJournal& config, std::string_view handler) {
  return config.subject + ".replay." + std::string(handler);
}

std::string msg_id_for(std::string_view key) {
  if (key.size() <= kMaxMsgIdBytes && std::none_of(key.begin(), key.end(), is_control) &&
      !key.empty() && key.front() != ' ' && key.back() != ' ') {
    return std::string(key);
  }
  return "sha256:" + core::sha256_hex(key);
}

std::string header_value(std::string_view value, std::size_t max) {
  std::string out(value.substr(0, max));
  std::replace_if(out.begin(), out.end(), is_control, ' ');
  return out;
}

std::vector<std::string> split_handlers(std::string_view value) {
  std::vector<std::string> out;
  while (!value.empty()) {
    const auto comma = value.find(',');
    const std::string_view item = core::trim_blanks(value.substr(0, comma));
    if (!item.empty()) out.emplace_back(item);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
  }
  return out;
}

}  // namespace nats_names

// ---------------------------------------------------------------------------------------------
// The stream

std::optional<std::string> ensure_stream(nats::Connection& connection,
                                         const config::NatsJournal& config) {
  const std::string where =
      "JetStream stream " + config.stream + " on " + nats::connected_url(connection.get());
  if (!connection.connected()) return where + ": not connected to NATS";
  const std::string wildcard = config.subject + ".>";
  const char* subjects[] = {config.subject.c_str(), wildcard.c_str()};
  jsStreamConfig wanted;
  jsStreamConfig_Init(&wanted);
  wanted.Name = config.stream.c_str();
  wanted.Subjects = subjects;
  wanted.SubjectsLen = 2;
  wanted.Storage = js_FileStorage;
  wanted.Replicas = config.replicas;
  wanted.Duplicates = seconds_to_ns(config.duplicate_window_s);
  wanted.MaxAge = 0;

  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, connection.js(), config.stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) {
    code = static_cast<jsErrCode>(0);
    s = js_AddStream(&info, connection.js(), &wanted, nullptr, &code);
    if (s != NATS_OK) return where + ": cannot create it: " + js_error(s, code);
    jsStreamInfo_Destroy(info);
    return std::nullopt;
  }
  if (s != NATS_OK) return where + ": cannot read its settings: " + js_error(s, code);

  const jsStreamConfig* have = info->Config;
  std::set<std::string> have_subjects;
  for (int i = 0; have != nullptr && i < have->SubjectsLen; ++i)
    have_subjects.insert(have->Subjects[i]);
  const bool same = have != nullptr &&
                    have_subjects == std::set<std::string>{config.subject, wildcard} &&
                    have->Replicas == config.replicas && have->Duplicates == wanted.Duplicates &&
                    have->MaxAge == 0;
  const bool file_storage = have == nullptr || have->Storage == js_FileStorage;
  jsStreamInfo_Destroy(info);
  if (!file_storage) {
    return where +
           ": it exists with memory storage; the journal needs file storage (JetStream "
           "cannot change that: delete the stream or choose another journal.nats.stream)";
  }
  if (same) return std::nullopt;
  info = nullptr;
  code = static_cast<jsErrCode>(0);
  s = js_UpdateStream(&info, connection.js(), &wanted, nullptr, &code);
  if (s != NATS_OK) return where + ": cannot update its settings: " + js_error(s, code);
  jsStreamInfo_Destroy(info);
  return std::nullopt;
}

std::optional<nats::Options> journal_connection_options(const config::NatsJournal& config,
                                                        std::string& error) {
  nats::Options options;
  options.servers = config.servers;
  options.credentials_file = config.credentials_file;
  if (!config.token_env.empty()) {
    const char* token = std::getenv(config.token_env.c_str());
    if (token == nullptr || *token == '\0') {
      error = "journal.nats.token_env: the variable " + config.token_env + " is not set";
      return std::nullopt;
    }
    options.token = token;
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// NatsStore

NatsStore::NatsStore(config::NatsJournal config, std::uint64_t max_body_bytes, const Logger& log)
    : config_(std::move(config)), max_body_bytes_(max_body_bytes), log_(log) {}

NatsStore::~NatsStore() {
  stop();
}

std::optional<std::string> NatsStore::open() {
  std::string error;
  auto options = journal_connection_options(config_, error);
  if (!options) return error;
  connection_ = nats::Connection::open(*options, error);
  if (!connection_) return error;
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.PublishAsync.AckHandler = &NatsStore::on_ack;
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

bool NatsStore::writable() {
  return !stopping_ && connection_ != nullptr && ensured_ && connection_->connected();
}

std::string NatsStore::unavailable_reason() const {
  if (connection_ == nullptr) return "not opened";
  if (!connection_->connected()) {
    std::string servers;
    for (const auto& server : config_.servers)
      servers += (servers.empty() ? "" : ", ") + core::redacted_url(server);
    return "not connected to NATS (" + servers + ")";
  }
  std::lock_guard lock(mutex_);
  return ensured_ ? std::string() : last_error_;
}

void NatsStore::commit(CommitRequest request, Callback done) {
  using namespace nats_names;
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
    message.subject = quarantine_subject(config_);
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
    std::string handlers;
    for (const auto& h : request.handlers)
      handlers += (handlers.empty() ? "" : ",") + h;
    add(kHandlers, handlers);
  }
  add(kReceivedAt, r.received_at);
  add(kAttemptId, r.attempt_id);
  add(kRemoteAddr, r.remote_addr);
  add(kRequestId, r.request_id);
  // The body is copied into libnats's message before publish() returns, then freed with request.
  message.body = request.body;
  publish(std::move(message), std::move(done));
}

void NatsStore::publish(nats::Message message, Callback done) {
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

void NatsStore::on_ack(jsCtx*, natsMsg* msg, jsPubAck* ack, jsPubAckErr* error, void* closure) {
  auto* self = static_cast<NatsStore*>(closure);
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
        if (error->ErrCode != 0)
          result.error +=
              " (JetStream error code " + std::to_string(static_cast<int>(error->ErrCode)) + ")";
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

void NatsStore::finish(natsMsg* msg, CommitResult result) {
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

void NatsStore::fail_expired(bool all, const std::string& why) {
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

void NatsStore::maintain() {
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
      if (auto error = ensure_stream(*connection_, config_)) {
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

void NatsStore::stop() {
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
