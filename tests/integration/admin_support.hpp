#pragma once
// Helpers for the admin listener's integration tests (admin_*_test.cpp): a server with an admin
// listener on 127.0.0.1:0 and its port from the `listening` line, requests with or without the
// admin token, and a raw Server-Sent Events reader. Every test runs once per journal backend in
// backends().
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.hpp"

namespace fbr::itest {
class NatsCluster;
}

namespace fbr::itest::admin {

/// The journal backends every admin test runs with (NATS on a nats-server of the test's own).
inline std::vector<std::string> backends() {
  return {"sqlite", "nats"};
}

inline constexpr std::string_view kAdminToken = "admin-secret-token-0123456789";

struct ConsoleOptions {
  /// Admin tokens; empty: the open (loopback, no token) console.
  std::vector<std::string> admin_tokens = {std::string(kAdminToken)};
  std::string handlers;          ///< the `"handlers": [...]` member, or empty
  std::string extra_members;     ///< more raw members
  std::string invalid_payloads;  ///< e.g. "quarantine"
  std::string admin_members;     ///< more raw members of "admin", e.g. its "tls"
};

/// A server with an admin listener.
class Console {
 public:
  Console(const std::string& backend, ConsoleOptions options = {});
  ~Console();
  Server& server() { return *server_; }
  const Server& server() const { return *server_; }
  const TempDir& dir() const { return dir_; }
  unsigned short admin_port() const { return admin_port_; }
  /// The admin listener's own origin (what the page's requests carry).
  std::string origin() const;

  /// A request to the admin listener; with the admin token unless `token` is empty.
  HttpResponse get(const std::string& target, std::string_view token = kAdminToken) const;
  HttpResponse post(const std::string& target, std::string body = {},
                    std::string_view token = kAdminToken,
                    std::vector<std::pair<std::string, std::string>> headers = {}) const;
  /// GET that must answer 200 with JSON; the document.
  rapidjson::Document get_json(const std::string& target) const;

  /// POSTs an event to the webhook; REQUIREs its 200.
  void post_event_ok(const std::string& body) const;

  /// The backend answers the console's queries (its ConsoleStore is built).
  bool console_built() const;

 private:
  TempDir dir_;
  std::unique_ptr<NatsCluster> nats_;  // the journal of a "nats" console; stops after the server
  std::unique_ptr<Server> server_;
  unsigned short admin_port_ = 0;
};

/// Skips the test (returns true) while the backend's console is not built yet.
bool skip_without_console(const Console& console);

/// The admin listener's port from the log's `listening ... admin=HOST:PORT`.
unsigned short admin_port_of(const Server& server);

/// A raw reader of GET /api/stream on a socket of its own.
class EventStream {
 public:
  EventStream(unsigned short port, std::string_view token = kAdminToken,
              std::vector<std::pair<std::string, std::string>> headers = {});
  ~EventStream();
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  /// Waits until the answer's header is complete; its status line.
  std::string status_line(std::chrono::milliseconds timeout = 5s);
  /// Waits for an `event: <type>` whose data contains `needle`; that data. nullopt at the
  /// deadline.
  std::optional<std::string> wait_for(std::string_view type, std::string_view needle,
                                      std::chrono::milliseconds timeout);
  /// Waits until the received bytes contain `needle`.
  bool wait_for_text(std::string_view needle, std::chrono::milliseconds timeout);
  const std::string& received() const { return received_; }

 private:
  bool read_some(std::chrono::milliseconds timeout);
  int fd_ = -1;
  std::string received_;
  std::size_t scanned_ = 0;  // messages before this offset were looked at
};

/// The URL-encoded form of `s` (every byte but unreserved ones as %XX).
std::string url_encode(std::string_view s);

/// The server process's resident set (VmRSS) in KiB.
long resident_kib(pid_t pid);

}  // namespace fbr::itest::admin

namespace fbr::itest::admin {

/// An event (complete.json, or in-progress.json for status 202) with this Log ID, Meta.Test and,
/// when given, this attempt ID.
std::string event_body(const std::string& log_id, bool test = true, int status = 200,
                       const std::string& attempt_id = {});

}  // namespace fbr::itest::admin
