#include "server/http/http_server.hpp"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/system/errc.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "server/support/ids.hpp"

namespace fbr::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using std::chrono::milliseconds;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// A connection's read buffer keeps room for a typical event, header and body, so one recv reads
// a whole request: Beast's default grows it 512 bytes at a time, three recv calls for a 1.3 KB
// event. A larger body gets room for itself once its header is read (at most kMaxBodyRead at a
// time), and the buffer goes back to kReadBuffer afterwards, so idle connections stay small.
constexpr std::size_t kReadBuffer = 2048;
constexpr std::size_t kMaxBodyRead = 65536;

// A lingering close (RFC 9112 9.6) discards what the peer still sends for at most this long and
// this much, so that it reads its early answer instead of a reset, and no longer.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr std::uint64_t kLingerBytes = std::uint64_t{64} << 20;

// accept() out of descriptors or buffers: wait before trying again (doubling up to the cap), and
// say so at most once per interval.
constexpr milliseconds kAcceptPauseFirst{50};
constexpr milliseconds kAcceptPauseMax{1000};
constexpr auto kAcceptLogInterval = std::chrono::seconds(1);

/// Counts a value up for the lifetime of the guard.
class Counted {
 public:
  explicit Counted(std::atomic<std::int64_t>& n) : n_(n) { ++n_; }
  ~Counted() { --n_; }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;

 private:
  std::atomic<std::int64_t>& n_;
};

/// A malformed request (as opposed to a peer that closed or stalled): worth a 400 answer.
bool is_bad_request(const beast::error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_target).category()) return false;
  return ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

/// Transfer-Encoding absent, or exactly one header whose whole value is `chunked`.
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

std::string endpoint_text(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string host = address.to_string();
  if (address.is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(endpoint.port());
}

/// Discards up to `limit` bytes the peer has sent, without copying them anywhere (MSG_TRUNC on a
/// TCP socket drops them in the kernel). Returns the count, 0 at EOF, -1 with errno on error. A
/// direct system call: the sanitizers' recv interceptors would take the null buffer for a write.
long discard_received(int fd, std::uint64_t limit) {
  return ::syscall(SYS_recvfrom, fd, nullptr, static_cast<std::size_t>(limit),
                   MSG_TRUNC | MSG_DONTWAIT, nullptr, nullptr);
}

/// Closes after an early answer (401, 413, ...) with the write side shut first, dropping what
/// still arrives (at most kLingerTime and kLingerBytes), so the peer reads that answer instead of
/// a reset. Holds no buffer: the bytes are discarded in the kernel.
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

/// Over TLS: a close_notify, then the same lingering read through the TLS layer.
asio::awaitable<void> linger(beast::ssl_stream<beast::tcp_stream>& stream) {
  beast::get_lowest_layer(stream).expires_after(kLingerTime);
  co_await stream.async_shutdown(kTuple);
}

/// The whole answer in one string, one write: what Beast's response serializer wrote (status line,
/// Content-Type, X-Request-Id, Allow, Retry-After, Connection, Content-Length), for a tenth of
/// its instructions. The header values are ours (constants, a checked request ID): no CR or LF.
/// An answer to HEAD has GET's headers, Content-Length included, and no body (RFC 9110 9.3.2).
std::string serialize(const Reply& reply, unsigned version, bool keep_alive,
                      std::string_view request_id, bool head = false) {
  const auto header = [](std::string& out, std::string_view name, std::string_view value) {
    out.append(name).append(": ").append(value).append("\r\n");
  };
  std::string out;
  out.reserve(256 + reply.body.size());
  out.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ")
      .append(std::to_string(static_cast<unsigned>(reply.status)))
      .append(" ")
      .append(http::obsolete_reason(reply.status))
      .append("\r\n");
  header(out, "Content-Type", reply.content_type);
  // Browsers must not guess another type (an echoed challenge is text/plain, not HTML).
  header(out, "X-Content-Type-Options", "nosniff");
  header(out, "X-Request-Id", request_id);
  if (!reply.allow.empty()) header(out, "Allow", reply.allow);
  if (!reply.retry_after.empty()) header(out, "Retry-After", reply.retry_after);
  // HTTP/1.1 keeps the connection unless told; HTTP/1.0 closes it unless told.
  if (version >= 11 && !keep_alive) header(out, "Connection", "close");
  if (version < 11 && keep_alive) header(out, "Connection", "keep-alive");
  header(out, "Content-Length", std::to_string(reply.body.size()));
  out.append("\r\n");
  if (!head) out.append(reply.body);
  return out;
}

/// Out of descriptors, socket buffers or memory: accepting again at once would fail again.
bool accept_resources_exhausted(const beast::error_code& ec) {
  namespace errc = boost::system::errc;
  return ec == asio::error::no_descriptors || ec == errc::too_many_files_open_in_system ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

/// Raises the soft open-files limit to the hard one (each connection is a descriptor; the soft
/// limit is often 1024 while the hard one allows far more) and logs both.
void raise_open_files_limit(const Logger& log) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t was = limit.rlim_cur;
  std::string error;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      error = std::strerror(errno);
      limit.rlim_cur = was;
    }
  }
  auto fields = log.fields()
                    .add("soft", static_cast<std::uint64_t>(limit.rlim_cur))
                    .add("hard", static_cast<std::uint64_t>(limit.rlim_max))
                    .add("soft_at_start", static_cast<std::uint64_t>(was));
  if (error.empty()) {
    log.info("open_files_limit", fields);
  } else {
    log.warn("open_files_limit", fields.add("error", "setrlimit: " + error));
  }
}

beast::tcp_stream& tcp_layer(beast::tcp_stream& stream) {
  return stream;
}
beast::tcp_stream& tcp_layer(beast::ssl_stream<beast::tcp_stream>& stream) {
  return beast::get_lowest_layer(stream);
}

}  // namespace

HttpServer::HttpServer(const config::Config& config, const LiveConfig& live, Journal& journal,
                       Metrics& metrics, const Logger& log)
    : config_(config), log_(log), metrics_(metrics), router_(live, journal, metrics, log) {}

HttpServer::~HttpServer() = default;

std::optional<std::string> HttpServer::reload_tls(const config::Tls& tls) {
  if (!tls.enabled()) return std::nullopt;
  std::string error;
  auto context = make_tls_context(tls, error);
  if (!context) return error;
  tls_.store(std::move(context));
  return std::nullopt;
}

std::optional<std::string> HttpServer::listen() {
  raise_open_files_limit(log_);
  if (config_.tls.enabled()) {
    if (auto error = reload_tls(config_.tls)) return error;
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(config_.listen.host, ec);
  if (ec) return "listen: bad address " + config_.listen.host + ": " + ec.message();
  tcp::endpoint endpoint(address, config_.listen.port);
  acceptor_ = std::make_unique<tcp::acceptor>(asio::make_strand(ioc_));
  const std::string where = endpoint_text(endpoint);
  if (acceptor_->open(endpoint.protocol(), ec); ec) return "listen " + where + ": " + ec.message();
  acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (address.is_v6()) acceptor_->set_option(asio::ip::v6_only(false), ec);
  if (acceptor_->bind(endpoint, ec); ec) return "listen " + where + ": " + ec.message();
  if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec) {
    return "listen " + where + ": " + ec.message();
  }
  port_ = acceptor_->local_endpoint().port();
  return std::nullopt;
}

void HttpServer::run(unsigned threads, milliseconds drain) {
  threads_ = std::max(1u, threads);
  // Whatever start-up logged (the port announcement that scripts and tests wait for) is written
  // now, not at the next periodic flush.
  log_.flush();
  asio::co_spawn(acceptor_->get_executor(), accept_loop(), asio::detached);
  asio::signal_set signals(ioc_, SIGINT, SIGTERM);
  signals.async_wait([this, drain](beast::error_code ec, int signal) {
    if (ec) return;
    log_.info("shutdown", log_.fields()
                              .add("signal", signal == SIGTERM ? "SIGTERM" : "SIGINT")
                              .add("in_flight", static_cast<std::int64_t>(in_flight_.load())));
    begin_shutdown(drain);
  });
  asio::signal_set hangup(ioc_, SIGHUP);
  wait_for_hangup(hangup);
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads_; ++i)
    pool.emplace_back([this] { ioc_.run(); });
  ioc_.run();
  for (auto& t : pool)
    t.join();
}

void HttpServer::wait_for_hangup(asio::signal_set& hangup) {
  hangup.async_wait([this, &hangup](beast::error_code ec, int) {
    if (ec || stopping_) return;
    if (reload_) reload_();
    wait_for_hangup(hangup);
  });
}

void HttpServer::begin_shutdown(milliseconds drain) {
  stopping_ = true;
  asio::post(acceptor_->get_executor(), [this] {
    beast::error_code ec;
    acceptor_->close(ec);
  });
  // Poll until every request being served has been answered, or the drain time is up. Idle
  // keep-alive connections are simply dropped: nothing was promised on them.
  const auto deadline = std::chrono::steady_clock::now() + drain;
  drain_timer_ = std::make_unique<asio::steady_timer>(ioc_);
  auto poll = std::make_shared<std::function<void(beast::error_code)>>();
  *poll = [this, deadline, poll](beast::error_code) {
    if (in_flight_.load() == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (in_flight_.load() != 0) {
        log_.warn("drain_timeout",
                  log_.fields().add("in_flight", static_cast<std::int64_t>(in_flight_.load())));
      }
      ioc_.stop();
      *poll = nullptr;  // break the self-reference
      return;
    }
    drain_timer_->expires_after(milliseconds(10));
    drain_timer_->async_wait(*poll);
  };
  (*poll)({});
}

asio::awaitable<void> HttpServer::accept_loop() {
  asio::steady_timer pause(acceptor_->get_executor());
  milliseconds backoff{0};
  auto last_report = std::chrono::steady_clock::now() - kAcceptLogInterval;
  std::int64_t unreported = 0;  // accept errors since the last line
  for (;;) {
    // A strand per connection only when several threads run the io_context: with one, every
    // handler already runs in order on it, and a strand would only add a queue and a lock to
    // each completion.
    auto executor = threads_ > 1 ? asio::any_io_executor(asio::make_strand(ioc_))
                                 : asio::any_io_executor(ioc_.get_executor());
    auto [ec, socket] = co_await acceptor_->async_accept(executor, kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      // Out of descriptors (EMFILE) and the like: the pending connection stays queued and
      // accept() fails again at once, so wait (50 ms, doubling to 1 s) instead of spinning,
      // and log one line a second at most with the count of the others.
      if (accept_resources_exhausted(ec)) {
        backoff = backoff.count() == 0 ? kAcceptPauseFirst : std::min(backoff * 2, kAcceptPauseMax);
      }
      ++unreported;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_report >= kAcceptLogInterval) {
        log_.error("accept_failed",
                   log_.fields()
                       .add("error", ec.message())
                       .add("errors", unreported)
                       .add("retry_in_ms", static_cast<std::int64_t>(backoff.count())));
        last_report = now;
        unreported = 0;
      }
      if (backoff.count() > 0) {
        pause.expires_after(backoff);
        co_await pause.async_wait(kTuple);
      }
      continue;
    }
    backoff = milliseconds(0);
    socket.set_option(tcp::no_delay(true), ec);
    beast::tcp_stream stream(std::move(socket));
    if (connections_.load() >= static_cast<std::int64_t>(config_.limits.max_connections)) {
      asio::co_spawn(executor, refuse(std::move(stream)), asio::detached);
    } else {
      asio::co_spawn(executor, session(std::move(stream)), asio::detached);
    }
  }
}

asio::awaitable<void> HttpServer::refuse(beast::tcp_stream stream) {
  Reply reply = error_reply(http::status::service_unavailable, "too many connections");
  reply.retry_after = "1";
  const std::string response = serialize(reply, 11, false, new_uuid());
  stream.expires_after(std::chrono::seconds(5));
  co_await asio::async_write(stream, asio::buffer(response), kTuple);
  co_await linger(stream);
}

asio::awaitable<void> HttpServer::session(beast::tcp_stream stream) {
  Counted connection(connections_);
  metrics_.connections(1);
  beast::error_code ec;
  const std::string remote = endpoint_text(stream.socket().remote_endpoint(ec));
  if (auto tls = tls_.load()) {
    beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), *tls);
    // The handshake counts against the header timeout: a silent client is dropped all the same.
    beast::get_lowest_layer(secure).expires_after(milliseconds(config_.limits.header_timeout_ms));
    auto [handshake_ec] = co_await secure.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (handshake_ec) {
      log_.debug("tls_handshake_failed",
                 log_.fields().add("remote", remote).add("error", handshake_ec.message()));
    } else {
      co_await serve_requests(secure, remote);
    }
  } else {
    co_await serve_requests(stream, remote);
  }
  metrics_.connections(-1);
}

template <class Stream>
asio::awaitable<void> HttpServer::serve_requests(Stream& stream, const std::string& remote) {
  beast::error_code ec;
  const auto& limits = config_.limits;
  beast::flat_buffer buffer;
  bool first = true;

  for (;;) {
    if (buffer.capacity() > 8 * kReadBuffer && buffer.size() == 0) buffer = beast::flat_buffer();
    buffer.reserve(kReadBuffer);
    http::request_parser<RequestBody> parser;
    parser.header_limit(limits.max_header_bytes);
    // No limit while the header is read: admission decides it from the header (a token, or
    // not), so a large announced length without a valid token is a 401, not a 413.
    parser.body_limit(boost::none);
    // The first request's header must arrive within the header timeout; later ones may wait
    // for the idle (keep-alive) timeout.
    tcp_layer(stream).expires_after(
        milliseconds(first ? limits.header_timeout_ms : limits.idle_timeout_ms));
    first = false;
    auto [read_ec, header_bytes] = co_await http::async_read_header(stream, buffer, parser, kTuple);

    Reply reply;
    bool answer_early = false;
    if (read_ec == http::error::header_limit) {
      reply = error_reply(http::status::request_header_fields_too_large, "header too large");
      answer_early = true;
    } else if (is_bad_request(read_ec)) {
      reply = error_reply(http::status::bad_request, "bad request", read_ec.message());
      answer_early = true;
    } else if (read_ec) {
      break;  // closed, reset or timed out before a whole header: nothing to answer
    }
    const bool header_read = !answer_early;

    if (header_read && !te_acceptable(parser.get())) {
      // Only plain chunked framing: any other coding (gzip, unknown, several headers) would let
      // a body be read as something else (request smuggling). RFC 9112 6.3: 400 and close.
      reply = error_reply(http::status::bad_request, "bad request",
                          "unsupported Transfer-Encoding: only chunked is accepted");
      answer_early = true;
    }

    Counted in_flight(in_flight_);
    const auto started = std::chrono::steady_clock::now();
    auto& request = parser.get();
    RequestInfo info{remote, {}};
    if (header_read) {
      auto id = request["X-Request-Id"];
      info.request_id = usable_request_id(id) ? std::string(id) : new_uuid();
    } else {
      info.request_id = new_uuid();
    }

    // Admission, before any body byte is kept: a wrong header token, or a body larger than the
    // request may have, is answered now and the body never read.
    Admission admission;
    if (!answer_early) {
      admission = router_.admit(request, framing_of(parser), info);
      if (admission.early) {
        reply = std::move(*admission.early);
        answer_early = true;
      }
    }

    if (!answer_early && !parser.is_done()) {
      parser.body_limit(admission.body_limit);
      if (admission.may_continue && beast::iequals(request[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, request.version()};
        tcp_layer(stream).expires_after(milliseconds(limits.body_timeout_ms));
        auto [write_ec, n] = co_await http::async_write(stream, go_on, kTuple);
        if (write_ec) break;
      }
      if (auto remaining = parser.content_length_remaining()) {
        buffer.reserve(buffer.size() + std::min<std::uint64_t>(*remaining, kMaxBodyRead));
      }
      tcp_layer(stream).expires_after(milliseconds(limits.body_timeout_ms));
      auto [body_ec, body_bytes] = co_await http::async_read(stream, buffer, parser, kTuple);
      if (body_ec == http::error::body_limit) {
        reply = router_.over_limit(admission, info);
        answer_early = true;
      } else if (is_bad_request(body_ec)) {
        reply = error_reply(http::status::bad_request, "bad request", body_ec.message());
        answer_early = true;
      } else if (body_ec) {
        break;  // the body never arrived whole: nothing was accepted, Redox will retry
      }
    }

    // Counted before routing: the router moves the body into the journal.
    const std::size_t bytes_in = request.body().size();
    if (answer_early) {
      reply.close = true;
    } else {
      reply = co_await router_.handle(request, info);
    }

    const bool keep_alive = !answer_early && request.keep_alive() && !reply.close && !stopping_;
    const bool head = header_read && request.method() == http::verb::head;
    const std::string response = serialize(reply, request.version() ? request.version() : 11,
                                           keep_alive, info.request_id, head);
    tcp_layer(stream).expires_after(milliseconds(limits.body_timeout_ms));
    auto [write_ec, bytes_out] = co_await asio::async_write(stream, asio::buffer(response), kTuple);

    const double duration_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    metrics_.request(static_cast<unsigned>(reply.status), duration_ms / 1000.0);
    // The path only: a GET challenge's query carries a token.
    std::string_view target = request.target();
    target = target.substr(0, target.find('?'));
    if (log_.enabled(spdlog::level::info)) {
      log_.info("request",
                log_.fields()
                    .add("method", header_read ? std::string_view(request.method_string())
                                               : std::string_view("-"))
                    .add("path", header_read ? target : std::string_view("-"))
                    .add("status", static_cast<int>(reply.status))
                    .add("bytes_in", static_cast<std::uint64_t>(bytes_in))
                    .add("bytes_out", static_cast<std::uint64_t>(bytes_out))
                    .add("duration_ms", duration_ms)
                    .add("remote", remote)
                    .add("request_id", info.request_id));
    }
    if (write_ec) break;
    if (answer_early) {
      co_await linger(stream);
      co_return;
    }
    if (!keep_alive) break;
  }
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  } else {
    tcp_layer(stream).expires_after(kLingerTime);
    co_await stream.async_shutdown(kTuple);
  }
}

}  // namespace fbr::server
