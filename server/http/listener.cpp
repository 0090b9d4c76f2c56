#include "server/http/listener.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/errc.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/url.hpp"

namespace fbr::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using std::chrono::milliseconds;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// accept() out of descriptors or buffers: wait before trying again (doubling up to the cap), and
// say so at most once per interval.
constexpr milliseconds kAcceptPauseFirst{50};
constexpr milliseconds kAcceptPauseMax{1000};
constexpr auto kAcceptLogInterval = std::chrono::seconds(1);

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

}  // namespace

Listener::Listener(const config::Config& config, const LiveConfig& live, const LiveAuth& auth,
                   Journal& journal, Metrics& metrics, const Logger& log)
    : config_(config),
      log_(log),
      router_(live, journal, metrics, log, &auth),
      sessions_{config_.limits, router_, metrics, log} {}

Listener::~Listener() = default;

std::optional<std::string> Listener::reload_tls(const config::Tls& tls) {
  if (!tls.enabled()) return std::nullopt;
  std::string error;
  auto context = make_tls_context(tls, error);
  if (!context) return error;
  tls_.store(std::move(context));
  return std::nullopt;
}

std::optional<std::string> Listener::listen() {
  raise_open_files_limit(log_);
  if (config_.tls.enabled()) {
    if (auto error = reload_tls(config_.tls)) return error;
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(config_.listen.host, ec);
  if (ec) return "listen: bad address " + config_.listen.host + ": " + ec.message();
  tcp::endpoint endpoint(address, config_.listen.port);
  acceptor_ = std::make_unique<tcp::acceptor>(asio::make_strand(ioc_));
  const std::string where = core::host_port(address.to_string(), endpoint.port());
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

void Listener::run(unsigned threads, milliseconds drain) {
  threads_ = std::max(1u, threads);
  // Whatever start-up logged (the port announcement that scripts and tests wait for) is written
  // now, not at the next periodic flush.
  log_.flush();
  asio::co_spawn(acceptor_->get_executor(), accept_loop(), asio::detached);
  asio::signal_set signals(ioc_, SIGINT, SIGTERM);
  signals.async_wait([this, drain](beast::error_code ec, int signal) {
    if (ec) return;
    log_.info("shutdown",
              log_.fields()
                  .add("signal", signal == SIGTERM ? "SIGTERM" : "SIGINT")
                  .add("in_flight", static_cast<std::int64_t>(sessions_.in_flight.load())));
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

void Listener::wait_for_hangup(asio::signal_set& hangup) {
  hangup.async_wait([this, &hangup](beast::error_code ec, int) {
    if (ec || sessions_.stopping) return;
    if (reload_) reload_();
    wait_for_hangup(hangup);
  });
}

void Listener::begin_shutdown(milliseconds drain) {
  sessions_.stopping = true;
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
    if (sessions_.in_flight.load() == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (sessions_.in_flight.load() != 0) {
        log_.warn(
            "drain_timeout",
            log_.fields().add("in_flight", static_cast<std::int64_t>(sessions_.in_flight.load())));
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

asio::awaitable<void> Listener::accept_loop() {
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
    if (sessions_.connections.load() >= static_cast<std::int64_t>(config_.limits.max_connections)) {
      asio::co_spawn(executor, refuse_connection(std::move(stream)), asio::detached);
    } else {
      asio::co_spawn(executor, serve_connection(sessions_, std::move(stream), tls_.load()),
                     asio::detached);
    }
  }
}

}  // namespace fbr::server
