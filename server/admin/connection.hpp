#pragma once
// One admin connection: the TLS handshake when configured, then request after request with
// keep-alive: the header (16 KiB, within the header timeout), the access decision on it alone (a
// refusal is answered and the connection closed without reading the body), the body (64 KiB),
// the answer with the security headers every answer carries; or the event stream, which keeps
// the connection to itself.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <memory>

#include "server/admin/api.hpp"
#include "server/admin/stream.hpp"
#include "server/http/tls.hpp"
#include "server/support/log.hpp"

namespace fbr::server::admin {

inline constexpr std::size_t kMaxHeaderBytes = 16 * 1024;
inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;
inline constexpr auto kHeaderTimeout = std::chrono::seconds(10);
inline constexpr auto kIdleTimeout = std::chrono::seconds(60);
inline constexpr auto kBodyTimeout = std::chrono::seconds(10);

/// What the connections of one admin server share.
struct Connections {
  Api& api;
  const Logger& log;
  std::shared_ptr<StreamGate> gate;
  bool tls = false;
  std::atomic<int> open{0};
};

/// Serves one accepted connection (TLS when `tls` is set) until it closes.
boost::asio::awaitable<void> serve_connection(Connections& shared, boost::beast::tcp_stream stream,
                                              std::shared_ptr<TlsContext> tls);

}  // namespace fbr::server::admin
