#include "server/admin/connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "core/text.hpp"
#include "core/url.hpp"
#include "server/support/activity.hpp"

namespace fbr::server::admin {
namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

/// Counts a connection for its lifetime.
struct Open {
  explicit Open(std::atomic<int>& n) : n_(n) { ++n_; }
  ~Open() { --n_; }
  Open(const Open&) = delete;
  Open& operator=(const Open&) = delete;
  std::atomic<int>& n_;
};

/// The answer as Beast writes it, with the headers every admin answer carries.
http::response<http::string_body> response(AdminReply reply, unsigned version, bool keep_alive,
                                           bool head) {
  http::response<http::string_body> res{reply.status, version};
  if (!reply.content_type.empty()) res.set(http::field::content_type, reply.content_type);
  for (auto& [name, value] : reply.headers)
    res.insert(name, value);
  // Browsers must not guess types, frame the console, or send its URLs elsewhere; the page's
  // scripts and styles come from here only.
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Frame-Options", "DENY");
  res.set("Referrer-Policy", "no-referrer");
  res.set("Content-Security-Policy",
          "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  // The API's answers hold event data: never kept by a browser or a proxy.
  res.set(http::field::cache_control, reply.page ? "no-cache" : "no-store");
  res.keep_alive(keep_alive);
  const std::size_t length = reply.body.size();
  if (!head) res.body() = std::move(reply.body);
  // A 204 has no body and says no length (RFC 9110 8.6).
  if (reply.status != http::status::no_content) res.content_length(length);
  return res;
}

template <class Stream>
asio::awaitable<beast::error_code> write(Stream& stream, const AdminReply& reply, unsigned version,
                                         bool keep_alive, bool head = false) {
  auto res = response(reply, version ? version : 11, keep_alive, head);
  beast::get_lowest_layer(stream).expires_after(kBodyTimeout);
  auto [ec, n] = co_await http::async_write(stream, res, kTuple);
  co_return ec;
}

/// A final answer made here: every argument is a value or a view, so no temporary with a
/// destructor sits inside the caller's co_await (GCC 12's coroutines mishandle those).
template <class Stream>
asio::awaitable<void> refuse(Stream& stream, http::status status, std::string_view message,
                             unsigned version, std::string_view allow = {}) {
  const AdminReply reply = allow.empty() ? json_error(status, message) : method_not_allowed(allow);
  co_await write(stream, reply, version, false);
}

std::string_view raw_path(std::string_view target) {
  return target.substr(0, target.find('?'));
}

template <class Stream>
asio::awaitable<void> serve_requests(Connections& shared, Stream& stream,
                                     const RemoteInfo& remote) {
  beast::flat_buffer buffer;
  for (bool first = true;; first = false) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    // The body's limit is applied once the header passed the gate: a stranger's declared length
    // must get its 401, not a 413.
    parser.body_limit(boost::none);
    beast::get_lowest_layer(stream).expires_after(first ? kHeaderTimeout : kIdleTimeout);
    auto [header_ec, header_bytes] =
        co_await http::async_read_header(stream, buffer, parser, kTuple);
    if (header_ec) {
      if (header_ec == http::error::header_limit) {
        co_await refuse(stream, http::status::request_header_fields_too_large,
                        "request header too large", 11);
      } else if (header_ec.category() ==
                     http::make_error_code(http::error::bad_target).category() &&
                 header_ec != http::error::end_of_stream &&
                 header_ec != http::error::partial_message) {
        co_await refuse(stream, http::status::bad_request, "bad request", 11);
      }
      co_return;
    }
    const auto& header = parser.get();
    const unsigned version = header.version();
    const std::string path(raw_path(header.target()));
    if (!Api::public_route(header.method(), path)) {
      const Access access = shared.api.access(header);
      if (!access.allowed) {
        // Answered from the header alone: no body byte of a stranger's request is read.
        shared.log.warn("admin_refused", shared.log.fields()
                                             .add("status", static_cast<int>(access.status))
                                             .add("path", core::printable(path.substr(0, 200)))
                                             .add("remote", remote.addr));
        co_await refuse(stream, access.status, access.error, version);
        co_return;
      }
    }
    if (parser.content_length().value_or(0) > kMaxBodyBytes) {
      co_await refuse(stream, http::status::payload_too_large, "body too large", version);
      co_return;
    }
    parser.body_limit(kMaxBodyBytes);  // a chunked body is held to it as it comes
    if (beast::iequals(header[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(stream, asio::buffer(kContinue), kTuple);
    }
    if (!parser.is_done()) {
      beast::get_lowest_layer(stream).expires_after(kBodyTimeout);
      auto [body_ec, body_bytes] = co_await http::async_read(stream, buffer, parser, kTuple);
      if (body_ec == http::error::body_limit) {
        co_await refuse(stream, http::status::payload_too_large, "body too large", version);
        co_return;
      }
      if (body_ec) co_return;
    }
    auto request = parser.release();
    if (path == "/api/stream") {
      if (request.method() != http::verb::get) {
        co_await refuse(stream, http::status::method_not_allowed, {}, version, "GET");
        co_return;
      }
      co_await serve_stream(stream, activity(), shared.gate, version);
      co_return;
    }
    const bool head = request.method() == http::verb::head;
    AdminReply reply = co_await shared.api.handle(request, remote);
    const bool keep_alive = request.keep_alive() && !shared.gate->closed();
    if (shared.log.enabled(spdlog::level::debug)) {
      shared.log.debug("admin_request",
                       shared.log.fields()
                           .add("method", std::string_view(request.method_string()))
                           .add("path", core::printable(path.substr(0, 200)))
                           .add("status", static_cast<int>(reply.status))
                           .add("remote", remote.addr));
    }
    if (co_await write(stream, reply, version, keep_alive, head)) co_return;
    if (!keep_alive) co_return;
  }
}

}  // namespace

asio::awaitable<void> serve_connection(Connections& shared, beast::tcp_stream stream,
                                       std::shared_ptr<TlsContext> tls) {
  Open open(shared.open);
  beast::error_code ec;
  const auto peer = stream.socket().remote_endpoint(ec);
  const RemoteInfo remote{core::host_port(peer.address().to_string(), peer.port())};
  if (tls) {
    beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), *tls);
    beast::get_lowest_layer(secure).expires_after(kHeaderTimeout);
    auto [handshake_ec] = co_await secure.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (handshake_ec) co_return;
    co_await serve_requests(shared, secure, remote);
    beast::get_lowest_layer(secure).expires_after(std::chrono::seconds(2));
    co_await secure.async_shutdown(kTuple);
  } else {
    co_await serve_requests(shared, stream, remote);
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }
}

}  // namespace fbr::server::admin
