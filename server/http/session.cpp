#include "server/http/session.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cerrno>
#include <chrono>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/url.hpp"
#include "server/http/request_reader.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using std::chrono::milliseconds;

bool is_bad_request(const beast::error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_target).category()) return false;
  return ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

bool te_acceptable(const RequestHeader& request) {
  const auto count = request.count(http::field::transfer_encoding);
  if (count == 0) return true;
  if (count > 1) return false;
  std::string_view value = request[http::field::transfer_encoding];
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
    value.remove_suffix(1);
  return beast::iequals(value, "chunked");
}

bool usable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// A lingering close (RFC 9112 9.6) discards what the peer still sends for at most this long and
// this much, so that it reads its early answer instead of a reset, and no longer.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr std::uint64_t kLingerBytes = std::uint64_t{64} << 20;

/// Discards up to `limit` bytes the peer has sent, without copying them anywhere (MSG_TRUNC on a
/// TCP socket drops them in the kernel). Returns the count, 0 at EOF, -1 with errno on error. A
/// direct system call: the sanitizers' recv interceptors would take the null buffer for a write.
long discard_received(int fd, std::uint64_t limit) {
  return ::syscall(SYS_recvfrom, fd, nullptr, static_cast<std::size_t>(limit),
                   MSG_TRUNC | MSG_DONTWAIT, nullptr, nullptr);
}

}  // namespace

// Holds no buffer: the bytes are discarded in the kernel.
asio::awaitable<void> linger(beast::tcp_stream& stream) {
  using namespace asio::experimental::awaitable_operators;
  auto& socket = stream.socket();
  beast::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  asio::steady_timer deadline(socket.get_executor());
  deadline.expires_after(kLingerTime);
  for (std::uint64_t discarded = 0; discarded < kLingerBytes;) {
    const long n = discard_received(socket.native_handle(), kLingerBytes - discarded);
    if (n > 0) {
      discarded += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
    auto woke =
        co_await (socket.async_wait(tcp::socket::wait_read, kTuple) || deadline.async_wait(kTuple));
    if (woke.index() == 1 || std::get<0>(std::get<0>(woke))) break;
  }
}

// Over TLS: a close_notify, then the same lingering read through the TLS layer.
asio::awaitable<void> linger(beast::ssl_stream<beast::tcp_stream>& stream) {
  beast::get_lowest_layer(stream).expires_after(kLingerTime);
  co_await stream.async_shutdown(kTuple);
}

asio::awaitable<void> shut_down(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  co_return;
}
asio::awaitable<void> shut_down(beast::ssl_stream<beast::tcp_stream>& stream) {
  beast::get_lowest_layer(stream).expires_after(kLingerTime);
  co_await stream.async_shutdown(kTuple);
}

asio::awaitable<void> serve_connection(Sessions& sessions, beast::tcp_stream stream,
                                       std::shared_ptr<TlsContext> tls) {
  Counted connection(sessions.connections);
  sessions.metrics.connections(1);
  beast::error_code ec;
  const auto peer = stream.socket().remote_endpoint(ec);
  std::string remote = core::host_port(peer.address().to_string(), peer.port());
  if (tls) {
    beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), *tls);
    // The handshake counts against the header timeout: a silent client is dropped all the same.
    beast::get_lowest_layer(secure).expires_after(milliseconds(sessions.limits.header_timeout_ms));
    auto [handshake_ec] = co_await secure.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (handshake_ec) {
      sessions.log.debug(
          "tls_handshake_failed",
          sessions.log.fields().add("remote", remote).add("error", handshake_ec.message()));
    } else {
      co_await serve_requests(sessions, secure, std::move(remote));
    }
  } else {
    co_await serve_requests(sessions, stream, std::move(remote));
  }
  sessions.metrics.connections(-1);
}

asio::awaitable<void> refuse_connection(beast::tcp_stream stream) {
  Reply reply = error_reply(http::status::service_unavailable, "too many connections");
  reply.retry_after = "1";
  const std::string response = serialize(reply, 11, false, new_uuid());
  stream.expires_after(std::chrono::seconds(5));
  co_await asio::async_write(stream, asio::buffer(response), kTuple);
  co_await linger(stream);
}

}  // namespace fbr::server
