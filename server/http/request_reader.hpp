#pragma once
// Reading one request off a connection, over any stream (TCP, TLS, Beast's in-memory test stream
// in the fuzz target and unit tests): the header within its limit and timeout, the
// Transfer-Encoding check, the header-time admission (admission.hpp, through the Router), then
// `100 Continue` when invited and the body within its admitted limit and timeout. The result is
// the request read whole, or the early answer it gets instead (then the connection closes), or
// nothing (the peer closed, stalled or reset: nothing to answer).
#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "config/config.hpp"
#include "server/http/admission.hpp"
#include "server/http/reply.hpp"
#include "server/http/router.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {

/// Counts a value up for the lifetime of the guard (connections, requests in flight); movable,
/// so that a request read off the connection carries its count to the answer.
class Counted {
 public:
  Counted() = default;
  explicit Counted(std::atomic<std::int64_t>& n) : n_(&n) { ++*n_; }
  Counted(Counted&& other) noexcept : n_(std::exchange(other.n_, nullptr)) {}
  Counted& operator=(Counted&& other) noexcept {
    if (this != &other) {
      if (n_) --*n_;
      n_ = std::exchange(other.n_, nullptr);
    }
    return *this;
  }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  ~Counted() {
    if (n_) --*n_;
  }

 private:
  std::atomic<std::int64_t>* n_ = nullptr;
};

/// A request read off a connection, or what stands in for it.
struct Incoming {
  /// Set: nothing to answer (closed, reset or timed out before a whole request).
  bool closed = false;
  /// Set: answer this now and close (431, 400, 401, 413): the body was not read (whole).
  std::optional<Reply> early;
  /// The request: its header when header_read, its body too when neither closed nor early.
  Request request;
  RequestInfo info;
  bool header_read = false;
  std::size_t bytes_in = 0;                       ///< body bytes read
  std::chrono::steady_clock::time_point started;  ///< when the header was in
  Counted in_flight;  ///< held from the header until the answer is written (the drain waits)
};

/// A malformed request (as opposed to a peer that closed or stalled): worth a 400 answer.
bool is_bad_request(const boost::beast::error_code& ec);
/// Transfer-Encoding absent, or exactly one header whose whole value is `chunked`.
bool te_acceptable(const RequestHeader& request);
/// A client's X-Request-Id worth echoing: 1 to 200 visible ASCII characters.
bool usable_request_id(std::string_view id);

/// Sets the deadline of the stream's TCP layer; a stream without one (the in-memory test stream)
/// has no timeouts.
template <class Stream>
void expires_after(Stream& stream, std::chrono::milliseconds timeout) {
  auto& lowest = boost::beast::get_lowest_layer(stream);
  if constexpr (requires { lowest.expires_after(timeout); }) lowest.expires_after(timeout);
}

/// Reads the requests of one connection in order, keeping its read buffer between them.
class RequestReader {
 public:
  /// `in_flight` counts the requests being read or answered (from their header on).
  RequestReader(const config::Limits& limits, Router& router, std::atomic<std::int64_t>& in_flight,
                std::string remote)
      : limits_(limits), router_(router), in_flight_(in_flight), remote_(std::move(remote)) {}

  /// The next request on `stream`; see Incoming.
  template <class Stream>
  boost::asio::awaitable<Incoming> read(Stream& stream);

 private:
  // A connection's read buffer keeps room for a typical event, header and body, so one recv
  // reads a whole request: Beast's default grows it 512 bytes at a time, three recv calls for a
  // 1.3 KB event. A larger body gets room for itself once its header is read (at most
  // kMaxBodyRead at a time), and the buffer goes back to kReadBuffer afterwards, so idle
  // connections stay small.
  static constexpr std::size_t kReadBuffer = 2048;
  static constexpr std::size_t kMaxBodyRead = 65536;

  const config::Limits& limits_;
  Router& router_;
  std::atomic<std::int64_t>& in_flight_;
  const std::string remote_;
  boost::beast::flat_buffer buffer_;
  bool first_ = true;
};

template <class Stream>
boost::asio::awaitable<Incoming> RequestReader::read(Stream& stream) {
  namespace beast = boost::beast;
  using std::chrono::milliseconds;
  constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  Incoming in;
  if (buffer_.capacity() > 8 * kReadBuffer && buffer_.size() == 0) buffer_ = beast::flat_buffer();
  buffer_.reserve(kReadBuffer);
  http::request_parser<RequestBody> parser;
  parser.header_limit(limits_.max_header_bytes);
  // No limit while the header is read: admission decides it from the header (a token, or not),
  // so a large announced length without a valid token is a 401, not a 413.
  parser.body_limit(boost::none);
  // The first request's header must arrive within the header timeout; later ones may wait for
  // the idle (keep-alive) timeout.
  expires_after(stream, milliseconds(first_ ? limits_.header_timeout_ms : limits_.idle_timeout_ms));
  first_ = false;
  auto [read_ec, header_bytes] = co_await http::async_read_header(stream, buffer_, parser, kTuple);
  if (read_ec == http::error::header_limit) {
    in.early = error_reply(http::status::request_header_fields_too_large, "header too large");
  } else if (is_bad_request(read_ec)) {
    in.early = error_reply(http::status::bad_request, "bad request", read_ec.message());
  } else if (read_ec) {
    in.closed = true;  // closed, reset or timed out before a whole header: nothing to answer
    co_return in;
  }
  in.header_read = !in.early;
  if (in.header_read && !te_acceptable(parser.get())) {
    // Only plain chunked framing: any other coding (gzip, unknown, several headers) would let a
    // body be read as something else (request smuggling). RFC 9112 6.3: 400 and close.
    in.early = error_reply(http::status::bad_request, "bad request",
                           "unsupported Transfer-Encoding: only chunked is accepted");
  }

  in.in_flight = Counted(in_flight_);
  in.started = std::chrono::steady_clock::now();
  in.info.remote_addr = remote_;
  const auto id = in.header_read ? parser.get()["X-Request-Id"] : beast::string_view();
  in.info.request_id = in.header_read && usable_request_id(id) ? std::string(id) : new_uuid_v7();

  // Admission, before any body byte is kept: a wrong header token, or a body larger than the
  // request may have, is answered now and the body never read.
  Admission admission;
  if (!in.early) {
    admission = co_await router_.admit(parser.get(), framing_of(parser), in.info);
    in.early = std::move(admission.early);
  }

  if (!in.early && !parser.is_done()) {
    parser.body_limit(admission.body_limit);
    auto& request = parser.get();
    if (admission.may_continue && beast::iequals(request[http::field::expect], "100-continue")) {
      http::response<http::empty_body> go_on{http::status::continue_, request.version()};
      expires_after(stream, milliseconds(limits_.body_timeout_ms));
      auto [write_ec, n] = co_await http::async_write(stream, go_on, kTuple);
      if (write_ec) in.closed = true;
    }
    if (!in.closed) {
      if (auto remaining = parser.content_length_remaining()) {
        buffer_.reserve(buffer_.size() + std::min<std::uint64_t>(*remaining, kMaxBodyRead));
      }
      expires_after(stream, milliseconds(limits_.body_timeout_ms));
      auto [body_ec, body_bytes] = co_await http::async_read(stream, buffer_, parser, kTuple);
      if (body_ec == http::error::body_limit) {
        in.early = router_.over_limit(admission, in.info);
      } else if (is_bad_request(body_ec)) {
        in.early = error_reply(http::status::bad_request, "bad request", body_ec.message());
      } else if (body_ec) {
        in.closed = true;  // the body never arrived whole: nothing was accepted, Redox will retry
      }
    }
  }
  in.bytes_in = parser.get().body().size();
  in.request = parser.release();
  co_return in;
}

}  // namespace fbr::server
