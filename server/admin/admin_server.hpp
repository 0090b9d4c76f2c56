#pragma once
// The admin listener (admin.listen): the event console's page and JSON API (/api/...), /metrics
// and the detailed readiness, apart from the webhook listener Redox reaches. Its own io_context
// and threads, and a thread for the journal queries, so nothing here slows the webhook path.
// Who may use it: an admin token (Authorization: Bearer) or the session cookie a login with one
// gave; on a loopback address without admin.tokens, anyone (development).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "server/journal/backend.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {

class AdminServer {
 public:
  /// `config` is the start-up snapshot (admin.listen, admin.tls); `live` what a reload changes
  /// (admin.tokens, handlers). `store` answers the queries, `journal` the readiness.
  AdminServer(const config::Config& config, const LiveConfig& live, Backend& store,
              Metrics& metrics, const Logger& log);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// Loads admin.tls (or tls), binds admin.listen. Error message (naming the file or address).
  std::optional<std::string> listen();
  /// The bound port (after listen).
  [[nodiscard]] std::uint16_t port() const;
  /// Serves on threads of its own until stop().
  void start();
  /// Re-reads the certificate and key for new connections (SIGHUP); error or nullopt.
  std::optional<std::string> reload_tls(const config::Config& config);
  /// Closes the listener and every connection (open streams end), joins the threads.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fbr::server
