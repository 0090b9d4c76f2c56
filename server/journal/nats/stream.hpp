#pragma once
// The NATS stream contract, in one place: the journal's `nats` backend (nats/journal.hpp) writes
// events to it, the NATS dispatcher (nats/dispatcher.hpp) reads them and writes dead letters, the
// CLI (nats/events.hpp) lists them and writes replays. Every subject, consumer name and header
// name is built or read here, nowhere else.
//
//   stream   journal.nats.stream; subjects [S, S.>] with S = journal.nats.subject; file storage,
//            no max age, duplicate window journal.nats.duplicate_window_s, journal.nats.replicas.
//   S                        events: body = the raw event; Nats-Msg-Id = msg_id_for(event key)
//   S.quarantine             invalid bodies (invalid_payloads: quarantine): body = the raw body,
//                            header Fbr-Errors = JSON array of {"path", "message"}
//   S.dead.<handler>         dead letters, written by the dispatcher: the event's body and headers
//                            plus Fbr-Handler, Fbr-Stream-Seq (the event's stream sequence),
//                            Fbr-Error and Fbr-Attempts; `events` matches them to events by
//                            Fbr-Event-Key or Fbr-Stream-Seq
//   S.replay.<handler>       replays, written by `replay`: the event's body and headers, with
//                            Fbr-Handlers = that one handler and Fbr-Replay-Of = the event's
//                            stream sequence; Nats-Msg-Id = key + ":replay:" + handler + ":" + ms
//
//   (<handler> is the handler's name as configured: letters, digits, '_', '-', '.')
//
// Headers of an event (each value on one line; control characters become spaces):
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
// Each handler has two durable consumers, consumer_name(handler, false) = "fbr-" + the name with
// every character outside [A-Za-z0-9_-] replaced by '_' on S, and consumer_name(handler, true) =
// the same + "-replay" on S.replay.<handler>. `events` reports a delivery `done` once the events
// consumer's ack floor has reached the event's sequence, `dead` when a dead letter exists for it,
// else `pending`.
#include <nats/nats.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server::nats_stream {

// ---- Header names -------------------------------------------------------------------------------
inline constexpr const char* kMsgId = "Nats-Msg-Id";
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
inline constexpr const char* kError = "Fbr-Error";
inline constexpr const char* kAttempts = "Fbr-Attempts";

// ---- Subjects and consumers ---------------------------------------------------------------------
/// S (events), S.quarantine, S.dead.<handler>, S.replay.<handler> for S = `subject`.
std::string quarantine_subject(std::string_view subject);
std::string dead_subject(std::string_view subject, std::string_view handler);
std::string replay_subject(std::string_view subject, std::string_view handler);
/// S.dead.> : every dead letter.
std::string dead_letters(std::string_view subject);
/// The handler a dead letter's subject names ("" when `message_subject` is not a dead letter's).
std::string dead_subject_handler(std::string_view subject, std::string_view message_subject);
/// Durable consumer name of a handler: "fbr-" + name (+ "-replay"), every character outside
/// [A-Za-z0-9_-] replaced by '_'.
std::string consumer_name(std::string_view handler, bool replay = false);

// ---- Header values ------------------------------------------------------------------------------
/// The Nats-Msg-Id of an event: its key, or sha256:<hex of the key> for a key that is not a
/// clean header value (control characters, or longer than 512 bytes).
std::string msg_id_for(std::string_view key);
/// A header value on one line: control characters (CR, LF, ...) replaced by spaces, at most `max`
/// bytes.
std::string header_value(std::string_view value, std::size_t max = std::string_view::npos);
/// Fbr-Handlers for these handler names (comma-separated).
std::string handlers_value(const std::vector<std::string>& handlers);
/// Fbr-Handlers split at commas (blanks around names ignored, empty items dropped).
std::vector<std::string> split_handlers(std::string_view value);
/// True when the comma-separated `handlers` (Fbr-Handlers) lists `handler` by its whole name.
bool lists_handler(std::string_view handlers, std::string_view handler);

// ---- Reading messages ---------------------------------------------------------------------------
/// The value of header `name` of `msg`, "" when it has none.
std::string header(natsMsg* msg, const char* name);
/// Every header of `msg` except the Nats-* ones (the copy gets its own) and `except`, in order:
/// what a dead letter or a replay carries over from the event.
std::vector<std::pair<std::string, std::string>> copy_headers(
    natsMsg* msg, const std::vector<std::string_view>& except);

/// What an event message (on S or S.replay.<handler>) says about itself.
struct EventHeaders {
  std::string event_key;          ///< Fbr-Event-Key, else Nats-Msg-Id
  std::string msg_id;             ///< Nats-Msg-Id (the key, or a hash of a key unfit for a header)
  std::string replay_of;          ///< Fbr-Replay-Of: a replay's event stream sequence
  std::string log_id;             ///< Fbr-Log-Id
  std::string attempt_id;         ///< Fbr-Attempt-Id
  std::string handlers;           ///< Fbr-Handlers (comma-separated)
  std::string received_at;        ///< Fbr-Received-At
  std::string remote_addr;        ///< Fbr-Remote-Addr
  std::string request_id;         ///< Fbr-Request-Id
  int status = 0;                 ///< Fbr-Status (0 when missing or not a number)
  std::int64_t output_count = 0;  ///< Fbr-Output-Count (0 when missing or not a number)
};
EventHeaders read_event_headers(natsMsg* msg);
/// The key the dispatcher and the console give an event message: its event key, else
/// "nats-seq:<its stream sequence>" (a message nobody keyed).
std::string key_of(const EventHeaders& headers, std::uint64_t sequence);

/// What a dead letter (on S.dead.<handler>) says about the event it stands for.
struct DeadLetter {
  std::string handler;                    ///< Fbr-Handler, else from the subject
  std::string event_key;                  ///< Fbr-Event-Key, else Nats-Msg-Id
  std::string error;                      ///< Fbr-Error
  std::optional<int> attempts;            ///< Fbr-Attempts
  std::optional<std::uint64_t> sequence;  ///< Fbr-Stream-Seq: the event's stream sequence
};
DeadLetter read_dead_letter(natsMsg* msg, std::string_view subject);

// ---- Writing messages ---------------------------------------------------------------------------
/// The dead letter of event message `event` (with `headers`, its stream `sequence`) for `handler`.
/// `key` names the event; the body is `event`'s (it must outlive the result).
nats::Message dead_letter(std::string_view subject, natsMsg* event, const EventHeaders& headers,
                          const std::string& key, std::uint64_t sequence,
                          const std::string& handler, const std::string& error, int attempts);

/// A replay of the event `key` (stream `sequence`, carrying `headers`) for `handler`, unique per
/// `now_ms`. The body is left to the caller.
nats::Message replay(std::string_view subject, const std::string& key, std::uint64_t sequence,
                     std::vector<std::pair<std::string, std::string>> headers,
                     const std::string& handler, std::int64_t now_ms);

// ---- The stream ---------------------------------------------------------------------------------
/// libnats's text for a status, with JetStream's error code when there is one.
std::string js_error(natsStatus status, jsErrCode code);
/// " (JetStream error code N)", or "" for code 0.
std::string js_code(jsErrCode code);

/// Ensures the journal stream exists with the configured settings: creates it when missing,
/// updates it when its subjects, replicas or duplicate window differ. nullopt when ready, else
/// why not (naming the server, the stream and JetStream's error code and description).
std::optional<std::string> ensure_stream(nats::Connection& connection,
                                         const config::NatsJournal& config);

/// Connection options for journal.nats (the token from journal.nats.token_env, read here).
/// nullopt and `error` when token_env names an unset variable.
std::optional<nats::Options> connection_options(const config::NatsJournal& config,
                                                std::string& error);

/// journal.nats.servers for messages: redacted, comma-separated.
std::string servers_shown(const config::NatsJournal& config);

}  // namespace fbr::server::nats_stream
