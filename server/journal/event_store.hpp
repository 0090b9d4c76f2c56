#pragma once
// What the HTTP side needs from wherever accepted events are made durable: the embedded SQLite
// journal (server/journal/sqlite/journal.hpp) or NATS JetStream (server/journal/nats/journal.hpp).
// A commit's callback runs only once the event is durable (fsync'd, or acknowledged by JetStream)
// or definitely not.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
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

class EventStore {
 public:
  using Callback = std::function<void(CommitResult)>;
  virtual ~EventStore() = default;

  /// Queues a commit; `done` runs (on a store thread) once the event is durable or has failed.
  virtual void commit(CommitRequest request, Callback done) = 0;
  /// Ready for commits as far as the store knows (/readyz; a POST gets 503 when false).
  [[nodiscard]] virtual bool writable() = 0;
  /// Finishes queued commits, then releases the store.
  virtual void stop() = 0;
};

}  // namespace fbr::server
