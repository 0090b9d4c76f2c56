#pragma once
// One NATS connection (libnats, the official C client) with its JetStream context: the journal's
// `nats` backend, its consumers and the `nats` handler each hold one. It reconnects forever in the
// background; while it is not connected, publishes fail at once (no client-side buffering), so
// the HTTP side answers 503 instead of acknowledging an event that is not in the stream.
#include <nats/nats.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fbr::server::nats {

struct Options {
  std::vector<std::string> servers;  ///< nats://host:port (user:password@ allowed; never logged)
  std::string credentials_file;      ///< a NATS .creds file (JWT + NKey seed), or empty
  std::string token;                 ///< an auth token (from the environment), or empty
  std::string name = "fhir-bulk-receiver";
  int connect_timeout_ms = 2000;
  /// false: open() fails at once when no server answers (the CLI), instead of retrying for ever.
  bool retry_forever = true;
};

/// libnats's text for a status (and, when set, its last error detail).
std::string status_text(natsStatus status);

/// The server the connection is on now (redacted), or "no server" while it is not connected.
std::string connected_url(natsConnection* conn);

class Connection {
 public:
  /// Starts connecting. Returns a connection even when no server answers yet (it keeps trying in
  /// the background; connected() says when it is up); nullptr and `error` only for options that
  /// can never work (bad URL, unreadable credentials).
  static std::unique_ptr<Connection> open(const Options& options, std::string& error);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] bool connected() const;
  [[nodiscard]] natsConnection* get() const { return conn_; }
  [[nodiscard]] jsCtx* js() const { return js_; }

  /// Flushes and closes (pending publishes get their acks or errors first, within `timeout_ms`).
  void close(int timeout_ms = 2000);

 private:
  Connection() = default;
  natsOptions* options_ = nullptr;
  natsConnection* conn_ = nullptr;
  jsCtx* js_ = nullptr;
};

/// A JetStream publish's outcome.
struct PublishResult {
  bool ok = false;
  bool duplicate = false;  ///< JetStream already had this Nats-Msg-Id in its duplicate window
  std::uint64_t sequence = 0;
  std::string error;
};

/// A message to publish: subject, body, headers (Nats-Msg-Id is set from `msg_id` when given).
struct Message {
  std::string subject;
  std::string msg_id;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

/// Builds the natsMsg for `message` (caller owns it; nullptr and `error` on failure).
natsMsg* make_msg(const Message& message, std::string& error);

/// Publishes and waits for JetStream's acknowledgement (at most `timeout_ms`). With
/// `expect_stream`, the ack must come from that stream.
PublishResult publish_sync(Connection& connection, const Message& message, int timeout_ms,
                           const std::string& expect_stream = {});

}  // namespace fbr::server::nats
