#pragma once
// The journal's `nats` backend: accepted events go into a JetStream stream, so several receivers
// behind a load balancer share one journal, and JetStream's de-duplication (Nats-Msg-Id = event
// key) makes a Log ID sent to any of them a duplicate. A commit's callback runs only after
// JetStream's acknowledgement (the event is stored, on every replica the stream has).
//
// The stream, shared with the NATS dispatcher (server/nats_dispatcher.*) and the CLI:
//
//   stream   journal.nats.stream; subjects [S, S.>] with S = journal.nats.subject; file storage,
//            no max age, duplicate window journal.nats.duplicate_window_s, journal.nats.replicas.
//   S                        events: body = the raw event; Nats-Msg-Id = msg_id_for(event key)
//   S.quarantine             invalid bodies (invalid_payloads: quarantine): body = the raw body,
//                            header Fbr-Errors = JSON array of {"path", "message"}
//   S.dead.<handler>         dead letters, written by the dispatcher: the event's body and headers
//                            plus Fbr-Handler and Fbr-Stream-Seq (the event's stream sequence);
//                            `events` matches them to events by Fbr-Event-Key
//   S.replay.<handler>       replays, written by `replay`: the event's body and headers, with
//                            Fbr-Handlers = that one handler and Fbr-Replay-Of = the event's
//                            stream sequence; Nats-Msg-Id = key + ":replay:" + handler + ":" + ms
//
//   (<handler> is the handler's name as configured: letters, digits, '_', '-', '.')
//
// Headers of an event (each value on one line; control characters become '?'):
//   Fbr-Event-Key     the event key (Meta.Logs[0].ID, or sha256:<hex> of the body)
//   Fbr-Log-Id        Meta.Logs[0].ID (absent when the event has none)
//   Fbr-Status        200 or 202
//   Fbr-Received-At   ISO 8601 UTC, when this receiver got it
//   Fbr-Attempt-Id    Redox's attempt ID (or one we generated)
//   Fbr-Remote-Addr, Fbr-Request-Id
//   Fbr-Output-Count  number of output[] entries
//   Fbr-Test          "true" / "false" when Meta.Test is set; absent otherwise
//   Fbr-Handlers      comma-separated names of the handlers whose `when` matched (absent: none);
//                     a handler's consumer acks and skips an event that does not list it
//
// Each handler has a durable consumer named consumer_name(handler) = "fbr-" + the name with every
// character outside [A-Za-z0-9_-] replaced by '_'. `events` reports a delivery `done` once that
// consumer's ack floor has reached the event's sequence, `dead` when a dead letter exists for it,
// else `pending`.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "server/journal/event_store.hpp"
#include "server/support/log.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {

/// Names shared by the receiver, the dispatcher and the CLI (see the comment above).
namespace nats_names {
inline constexpr const char* kEventKey = "Fbr-Event-Key";
inline constexpr const char* kLogId = "Fbr-Log-Id";
inline constexpr const char* kStatus = "Fbr-Status";
inline constexpr const char* kReceivedAt = "Fbr-Received-At";
inline constexpr const char* kAttemptId = "Fbr-Attempt-Id";
inline constexpr const char* kRemoteAddr = "Fbr-Remote-Addr";
inline constexpr const char* kRequestId = "Fbr-Request-Id";
inline constexpr const char* kOutputCount = "Fbr-Output-Count";
inline constexpr const char* kTest = "Fbr-Test";
inline constexpr const char* kHandlers = "Fbr-Handlers";
inline constexpr const char* kErrors = "Fbr-Errors";
inline constexpr const char* kHandler = "Fbr-Handler";
inline constexpr const char* kStreamSeq = "Fbr-Stream-Seq";
inline constexpr const char* kReplayOf = "Fbr-Replay-Of";

/// "fbr-" + handler with characters outside [A-Za-z0-9_-] replaced by '_'.
std::string consumer_name(std::string_view handler);
std::string quarantine_subject(const config::NatsJournal& config);
std::string dead_subject(const config::NatsJournal& config, std::string_view handler);
std::string replay_subject(const config::NatsJournal& config, std::string_view handler);
/// The Nats-Msg-Id of an event: its key, or sha256:<hex of the key> for a key that is not a
/// clean header value (control characters, or longer than 512 bytes).
std::string msg_id_for(std::string_view key);
/// A header value on one line: control characters (CR, LF, ...) replaced by spaces, at most `max`
/// bytes.
std::string header_value(std::string_view value, std::size_t max = std::string_view::npos);
/// Fbr-Handlers split at commas (empty items dropped).
std::vector<std::string> split_handlers(std::string_view value);
}  // namespace nats_names

/// Ensures the journal stream exists with the configured settings: creates it when missing,
/// updates it when its subjects, replicas or duplicate window differ. nullopt when ready, else
/// why not (naming the server, the stream and JetStream's error code and description).
std::optional<std::string> ensure_stream(nats::Connection& connection,
                                         const config::NatsJournal& config);

/// Connection options for journal.nats (the token from journal.nats.token_env, read here).
/// nullopt and `error` when token_env names an unset variable.
std::optional<nats::Options> journal_connection_options(const config::NatsJournal& config,
                                                        std::string& error);

class NatsStore final : public EventStore {
 public:
  /// How long a publish waits for JetStream's acknowledgement before the commit fails (503).
  static constexpr int kAckTimeoutMs = 5000;

  /// `max_body_bytes`: the largest event the HTTP side accepts (a smaller NATS max_payload is
  /// logged as a warning on each connect: such events would get 503s).
  NatsStore(config::NatsJournal config, std::uint64_t max_body_bytes, const Logger& log);
  ~NatsStore() override;
  NatsStore(const NatsStore&) = delete;
  NatsStore& operator=(const NatsStore&) = delete;

  /// Starts connecting and ensuring the stream in the background: returns at once, also when no
  /// server answers yet (the store is then not writable: 503s until it is). An error only for
  /// settings that can never work (bad URL, unreadable credentials, token variable unset).
  std::optional<std::string> open();

  /// Publishes asynchronously; `done` runs on a libnats thread after JetStream's ack (ok, maybe
  /// duplicate) or its failure / kAckTimeoutMs without one (ok=false with the reason).
  void commit(CommitRequest request, Callback done) override;
  /// Connected, and the stream was ensured.
  [[nodiscard]] bool writable() override;
  /// Waits (a few seconds at most) for outstanding acks, fails what is left, disconnects.
  void stop() override;

  /// Why the store is not writable now (for logs), or empty.
  [[nodiscard]] std::string unavailable_reason() const;

 private:
  struct Pending {
    Callback done;
    std::chrono::steady_clock::time_point deadline;
  };
  static void on_ack(jsCtx* js, natsMsg* msg, jsPubAck* ack, jsPubAckErr* error, void* self);
  void finish(natsMsg* msg, CommitResult result);
  void maintain();
  void fail_expired(bool all, const std::string& why);
  void publish(nats::Message message, Callback done);

  config::NatsJournal config_;
  std::uint64_t max_body_bytes_;
  const Logger& log_;
  std::unique_ptr<nats::Connection> connection_;
  jsCtx* js_ = nullptr;  // ours: its async-publish ack handler is on_ack
  std::atomic<bool> ensured_{false};
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<natsMsg*, Pending> pending_;  // published, waiting for the ack
  std::string last_error_;               // the last ensure failure
  std::thread maintainer_;               // ensures the stream, expires lost acks
};

}  // namespace fbr::server
