#pragma once
// The HTTP/1.1 listener: binds, accepts (backing off when out of descriptors), hands each
// connection to a session (session.hpp) or refuses it past max_connections, reloads the TLS
// files on SIGHUP for new connections, and on SIGTERM/SIGINT stops accepting and drains the
// requests in flight.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "server/http/router.hpp"
#include "server/http/session.hpp"
#include "server/http/tls.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {

class Listener {
 public:
  /// `config` is the start-up snapshot (listen, limits, TLS files); `live` and `auth` what a
  /// reload changes.
  Listener(const config::Config& config, const LiveConfig& live, const LiveAuth& auth,
           Journal& journal, Metrics& metrics, const Logger& log);
  ~Listener();

  /// Loads the TLS certificate and key when configured, binds and listens on config.listen.
  /// Error message (naming the file or the address) or nullopt.
  std::optional<std::string> listen();

  /// Re-reads the certificate and key for new connections (SIGHUP). Error message or nullopt;
  /// on error the old ones stay.
  std::optional<std::string> reload_tls(const config::Tls& tls);

  /// Called on SIGHUP, on an io thread.
  void on_reload(std::function<void()> reload) { reload_ = std::move(reload); }
  /// The bound port (after listen).
  [[nodiscard]] std::uint16_t port() const { return port_; }

  /// Serves on `threads` threads until SIGTERM/SIGINT, then drains in-flight requests (at most
  /// `drain` long) and returns.
  void run(unsigned threads, std::chrono::milliseconds drain);

 private:
  boost::asio::awaitable<void> accept_loop();
  void begin_shutdown(std::chrono::milliseconds drain);
  void wait_for_hangup(boost::asio::signal_set& hangup);

  const config::Config& config_;
  const Logger& log_;
  Router router_;
  std::atomic<std::shared_ptr<TlsContext>> tls_;  // null: plain HTTP
  std::function<void()> reload_;
  // Declared before the io_context: session frames that the io_context destroys touch these.
  Sessions sessions_;
  boost::asio::io_context ioc_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  std::uint16_t port_ = 0;
  unsigned threads_ = 1;  // threads running ioc_ (set by run)
};

}  // namespace fbr::server
