#include "server/admin/admin_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <thread>

#include "core/url.hpp"
#include "server/admin/api.hpp"
#include "server/admin/connection.hpp"
#include "server/http/tls.hpp"

namespace fbr::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {

// Far above what operators open (a page holds two connections: its requests and its stream),
// far below what would starve the process of descriptors.
constexpr int kMaxConnections = 1024;

/// The TLS settings of the admin listener: its own, else the webhook listener's.
const config::Tls& admin_tls(const config::Config& config) {
  return config.admin.tls.enabled() ? config.admin.tls : config.tls;
}

}  // namespace

struct AdminServer::Impl {
  Impl(const config::Config& config, const LiveConfig& live, Backend& store, Metrics& metrics,
       const Logger& log)
      : config(config),
        log(log),
        api(live, store, metrics, log, pool, admin_tls(config).enabled()),
        shared{api, log, nullptr, admin_tls(config).enabled()} {
    shared.gate = std::make_shared<admin::StreamGate>(ioc.get_executor());
  }

  asio::awaitable<void> accept_loop();

  const config::Config& config;
  const Logger& log;
  // The journal's calls block: one worker of their own, so a slow query never holds up an io
  // thread (and the backend sees one caller at a time).
  asio::thread_pool pool{1};
  admin::Api api;
  admin::Connections shared;
  std::atomic<std::shared_ptr<TlsContext>> tls;
  // After what the connections use: the coroutine frames the io_context destroys with it still
  // find api and shared.
  asio::io_context ioc{1};
  std::unique_ptr<tcp::acceptor> acceptor;
  std::thread thread;
  std::uint16_t port = 0;
};

asio::awaitable<void> AdminServer::Impl::accept_loop() {
  constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, socket] = co_await acceptor->async_accept(kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      // Out of descriptors and the like: a pause instead of a spin (the webhook listener logs
      // these; the admin one is secondary).
      asio::steady_timer pause(ioc, std::chrono::milliseconds(100));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (shared.open.load() >= kMaxConnections) continue;  // closed by the socket's destructor
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(
        ioc, admin::serve_connection(shared, beast::tcp_stream(std::move(socket)), tls.load()),
        asio::detached);
  }
}

AdminServer::AdminServer(const config::Config& config, const LiveConfig& live, Backend& store,
                         Metrics& metrics, const Logger& log)
    : impl_(std::make_unique<Impl>(config, live, store, metrics, log)) {}

AdminServer::~AdminServer() {
  stop();
}

std::optional<std::string> AdminServer::listen() {
  if (!impl_->config.admin.listen) return "admin.listen: not set";
  if (auto error = reload_tls(impl_->config)) return error;
  const config::Listen& where = *impl_->config.admin.listen;
  beast::error_code ec;
  // localhost is a loopback name the config accepts; it binds where a browser looks for it.
  const std::string host = where.host == "localhost" ? "127.0.0.1" : where.host;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return "admin.listen: bad address " + where.host + ": " + ec.message();
  tcp::endpoint endpoint(address, where.port);
  const std::string shown = "admin.listen " + core::host_port(address.to_string(), where.port);
  auto acceptor = std::make_unique<tcp::acceptor>(impl_->ioc);
  if (acceptor->open(endpoint.protocol(), ec); ec) return shown + ": " + ec.message();
  acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (address.is_v6()) acceptor->set_option(asio::ip::v6_only(false), ec);
  if (acceptor->bind(endpoint, ec); ec) return shown + ": " + ec.message();
  if (acceptor->listen(asio::socket_base::max_listen_connections, ec); ec) {
    return shown + ": " + ec.message();
  }
  impl_->port = acceptor->local_endpoint().port();
  impl_->acceptor = std::move(acceptor);
  return std::nullopt;
}

std::uint16_t AdminServer::port() const {
  return impl_->port;
}

void AdminServer::start() {
  if (!impl_->acceptor || impl_->thread.joinable()) return;
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

std::optional<std::string> AdminServer::reload_tls(const config::Config& config) {
  const config::Tls& settings = admin_tls(config);
  if (!settings.enabled()) return std::nullopt;
  std::string error;
  auto context = make_tls_context(settings, error);
  if (!context) return (config.admin.tls.enabled() ? "admin.tls: " : "tls: ") + error;
  impl_->tls.store(std::move(context));
  return std::nullopt;
}

void AdminServer::stop() {
  if (!impl_) return;
  // No publisher posts to the io_context from now on; then the listener and the connections
  // stop with it, and the worker finishes the query it is in.
  impl_->shared.gate->close();
  if (impl_->thread.joinable()) {
    asio::post(impl_->ioc, [this] {
      beast::error_code ec;
      if (impl_->acceptor) impl_->acceptor->close(ec);
    });
    impl_->ioc.stop();
    impl_->thread.join();
  }
  impl_->pool.join();
}

}  // namespace fbr::server
