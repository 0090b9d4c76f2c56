#pragma once
// The journal: where accepted events are made durable, whichever backend keeps them (the embedded
// SQLite journal, server/journal/sqlite/, or NATS JetStream, server/journal/nats/; backend.hpp
// picks one). The write side is what the HTTP side needs: a commit's callback runs only once the
// event is durable (fsync'd, or acknowledged by JetStream) or definitely not. The read side (the
// rows below) is what both backends show the CLI (`events`).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fbr::server {

/// How a request arrived: stored with every attempt.
struct Receipt {
  std::string received_at;  ///< ISO 8601 UTC
  std::string attempt_id;   ///< Redox's Meta.Logs[0].AttemptID, or one we generated
  std::string remote_addr;
  std::string request_id;
};

/// A valid event to journal (or, with `quarantine`, an invalid body to keep with its errors).
struct CommitRequest {
  bool quarantine = false;
  std::string key;
  std::string log_id;
  int status = 0;
  std::optional<bool> test;
  std::int64_t output_count = 0;
  std::string body;
  std::string errors_json;  ///< quarantine only: JSON array of {path, message}
  Receipt receipt;
  /// Handlers whose `when` matched: a pending delivery each, in the same transaction, when the
  /// event is new (a duplicate runs no handler again).
  std::vector<std::string> handlers;
};

struct CommitResult {
  bool ok = false;
  bool duplicate = false;
  std::string error;  ///< why the commit failed (SQLite's message)
};

class Journal {
 public:
  using Callback = std::function<void(CommitResult)>;

  /// Runs a function later on the caller's thread, after the work already queued there (the
  /// HTTP side passes a post to the session's executor).
  using Defer = std::function<void(std::function<void()>)>;
  virtual ~Journal() = default;

  /// Queues a commit; `done` runs (on a journal thread) once the event is durable or has failed.
  virtual void commit(CommitRequest request, Callback done) = 0;
  /// The same promise as commit(), from a caller that can lend its thread: a journal with nothing
  /// else to do may run the commit there through `defer` (`done` then runs on that thread) instead
  /// of handing it to a thread of its own and back. The default is commit().
  virtual void commit_or_defer(CommitRequest request, Callback done, const Defer& /*defer*/) {
    commit(std::move(request), std::move(done));
  }
  /// Ready for commits as far as the journal knows (/readyz; a POST gets 503 when false).
  [[nodiscard]] virtual bool writable() = 0;
  /// Finishes queued commits, then releases the journal.
  virtual void stop() = 0;
};

/// Where a delivery (an event for one handler) stands.
enum class DeliveryState { kPending, kRunning, kDone, kFailed, kDead };
std::string_view to_string(DeliveryState state);

/// Read side, for the CLI (`events`) and tests: an event with its attempts and deliveries.
struct AttemptRow {
  std::string attempt_id, received_at, remote_addr, request_id;
  bool duplicate = false;
};
struct DeliveryRow {
  std::string handler, state, last_error, updated_at;
  int attempts = 0;
  std::int64_t next_attempt_at_ms = 0;
};
struct EventRow {
  std::string key, log_id, received_at;
  int status = 0;
  std::int64_t output_count = 0;
  std::vector<AttemptRow> attempts;
  std::vector<DeliveryRow> deliveries;
};

/// Milliseconds since the Unix epoch, now.
std::int64_t unix_ms_now();

}  // namespace fbr::server
