#pragma once
// One connection, served by one coroutine (on its own strand when several threads run the
// io_context): the TLS handshake when configured, then request after request in order —
// RequestReader reads one (or its early answer), the Router answers it, the answer is written —
// with keep-alive and pipelining, until the peer closes, a timeout, an early answer (then a
// lingering close) or the shutdown.
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "server/http/request_reader.hpp"
#include "server/http/router.hpp"
#include "server/http/tls.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {

/// What the sessions of one listener share: the limits, the router, and the counts that the
/// listener's connection limit and drain read.
struct Sessions {
  const config::Limits& limits;
  Router& router;
  Metrics& metrics;
  const Logger& log;
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::int64_t> in_flight{0};  ///< requests from their header to their answer
  std::atomic<bool> stopping{false};       ///< shutting down: answer, then close
};

/// Closes after an early answer (401, 413, ...) with the write side shut first, dropping what
/// still arrives (at most 2 s and 64 MiB), so the peer reads that answer instead of a reset.
boost::asio::awaitable<void> linger(boost::beast::tcp_stream& stream);
boost::asio::awaitable<void> linger(boost::beast::ssl_stream<boost::beast::tcp_stream>& stream);
/// The end of a connection after its last answer: the write side shut (TCP), a close_notify (TLS).
boost::asio::awaitable<void> shut_down(boost::beast::tcp_stream& stream);
boost::asio::awaitable<void> shut_down(boost::beast::ssl_stream<boost::beast::tcp_stream>& stream);
/// A stream without a socket beneath (Beast's in-memory test stream) has nothing to linger on or
/// shut.
template <class Stream>
boost::asio::awaitable<void> linger(Stream&) {
  co_return;
}
template <class Stream>
boost::asio::awaitable<void> shut_down(Stream&) {
  co_return;
}

/// Writes the answer to `in`, then counts and logs the request. The write's error, if any.
template <class Stream>
boost::asio::awaitable<boost::beast::error_code> write_answer(Sessions& sessions, Stream& stream,
                                                              const Incoming& in,
                                                              const Reply& reply, bool keep_alive) {
  constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  const auto& request = in.request;
  const bool head = in.header_read && request.method() == http::verb::head;
  const std::string response = serialize(reply, request.version() ? request.version() : 11,
                                         keep_alive, in.info.request_id, head);
  expires_after(stream, std::chrono::milliseconds(sessions.limits.body_timeout_ms));
  auto [write_ec, bytes_out] =
      co_await boost::asio::async_write(stream, boost::asio::buffer(response), kTuple);

  const double duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - in.started)
          .count();
  sessions.metrics.request(static_cast<unsigned>(reply.status), duration_ms / 1000.0);
  const Logger& log = sessions.log;
  if (log.enabled(spdlog::level::info)) {
    // The path only: a GET challenge's query carries a token.
    std::string_view target = request.target();
    target = target.substr(0, target.find('?'));
    log.info("request",
             log.fields()
                 .add("method", in.header_read ? std::string_view(request.method_string())
                                               : std::string_view("-"))
                 .add("path", in.header_read ? target : std::string_view("-"))
                 .add("status", static_cast<int>(reply.status))
                 .add("bytes_in", static_cast<std::uint64_t>(in.bytes_in))
                 .add("bytes_out", static_cast<std::uint64_t>(bytes_out))
                 .add("duration_ms", duration_ms)
                 .add("remote", in.info.remote_addr)
                 .add("request_id", in.info.request_id));
  }
  co_return write_ec;
}

/// Request after request on `stream` (any stream: TCP, TLS, in memory): read one (RequestReader),
/// answer it (the early answer, or the Router's), write it; until the peer closes, an early answer
/// (then a lingering close), a request that does not keep the connection, or the shutdown.
template <class Stream>
boost::asio::awaitable<void> serve_requests(Sessions& sessions, Stream& stream,
                                            std::string remote) {
  RequestReader reader(sessions.limits, sessions.router, sessions.in_flight, std::move(remote));
  for (;;) {
    Incoming in = co_await reader.read(stream);
    if (in.closed) break;
    Reply reply;
    if (in.early) {
      reply = std::move(*in.early);
      reply.close = true;
    } else {
      reply = co_await sessions.router.handle(in.request, in.info);
    }
    const bool keep_alive =
        !in.early && in.request.keep_alive() && !reply.close && !sessions.stopping;
    const auto write_ec = co_await write_answer(sessions, stream, in, reply, keep_alive);
    if (write_ec) break;
    if (in.early) {
      co_await linger(stream);
      co_return;
    }
    if (!keep_alive) break;
  }
  co_await shut_down(stream);
}

/// Serves one accepted connection (TLS when `tls` is set) until it closes.
boost::asio::awaitable<void> serve_connection(Sessions& sessions, boost::beast::tcp_stream stream,
                                              std::shared_ptr<TlsContext> tls);

/// Answers a connection over the connection limit with 503 (Retry-After: 1) and closes it.
boost::asio::awaitable<void> refuse_connection(boost::beast::tcp_stream stream);

}  // namespace fbr::server
