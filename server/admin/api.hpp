#pragma once
// The admin listener's routes (README "The event console and the admin API"): the page and its
// assets, the login, the JSON API, /metrics and the detailed /readyz. Who may call a route is
// decided at the header (access.hpp) before any body byte is read; this answers the request once
// it is read whole. Every journal call runs on the worker pool (offload.hpp), never on the io
// thread. /api/stream is not here: the connection hands it to stream.hpp.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/url/params_view.hpp>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "server/admin/access.hpp"
#include "server/admin/reply.hpp"
#include "server/journal/backend.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server::admin {

using Request = http::request<http::string_body>;

/// Who sent a request, for the log lines of the actions (login, replay).
struct RemoteInfo {
  std::string addr;
};

class Api {
 public:
  Api(const LiveConfig& live, Backend& store, Metrics& metrics, const Logger& log,
      boost::asio::thread_pool& pool, bool tls);

  /// Whether anyone may call this route: the page, its assets, /healthz, the session's state,
  /// the login and the logout.
  static bool public_route(http::verb method, std::string_view path);
  /// The header-time decision for a protected route.
  Access access(const RequestHeader& header);
  /// The answer to a request read whole (a protected route only once access() allowed it).
  /// Never throws.
  boost::asio::awaitable<AdminReply> handle(const Request& request, const RemoteInfo& remote);

 private:
  boost::asio::awaitable<AdminReply> route(const Request& request, const RemoteInfo& remote);
  AdminReply session(const Request& request);
  AdminReply login(const Request& request, const RemoteInfo& remote);
  AdminReply logout(const Request& request);
  static AdminReply page(std::string_view path);
  AdminReply metrics() const;

  // api_events.cpp
  boost::asio::awaitable<AdminReply> events(boost::urls::params_view params);
  boost::asio::awaitable<AdminReply> event(const std::string& key);
  boost::asio::awaitable<AdminReply> replay(boost::urls::params_view params, const std::string& key,
                                            const RemoteInfo& remote);
  boost::asio::awaitable<AdminReply> bulk_replay(boost::urls::params_view params,
                                                 const RemoteInfo& remote);
  boost::asio::awaitable<AdminReply> quarantine(boost::urls::params_view params);
  boost::asio::awaitable<AdminReply> quarantined(const std::string& id);

  // status.cpp
  boost::asio::awaitable<AdminReply> status();
  boost::asio::awaitable<AdminReply> readiness();

  const LiveConfig& live_;
  Backend& store_;
  Metrics& metrics_;
  const Logger& log_;
  boost::asio::thread_pool& pool_;
  const bool tls_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  Sessions sessions_;
};

}  // namespace fbr::server::admin
