// libFuzzer target: the HTTP request path in-process — Beast's request parser with the server's
// limits, then the Router (authentication, challenges, model validation, journal commit).
#include <spdlog/sinks/null_sink.h>
#include <stdlib.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "server/journal.hpp"
#include "server/live_config.hpp"
#include "server/log.hpp"
#include "server/metrics.hpp"
#include "server/router.hpp"

namespace {

using namespace fbr;

struct World {
  World() {
    // The journal on tmpfs when there is one: commits fsync, and fuzzing commits many events.
    std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = base + "/fbr-fuzz-XXXXXX";
    dir = ::mkdtemp(pattern.data());
    config::Config c;
    c.verification_tokens = {"fuzz-token"};
    c.data_dir = dir / "data";
    c.invalid_payloads = config::InvalidPayloads::kQuarantine;
    live = std::make_unique<server::LiveConfig>(c);
    log = std::make_unique<server::Logger>(config::Log{"off", config::LogFormat::kText},
                                           std::make_shared<spdlog::sinks::null_sink_mt>());
    if (journal.open(c.data_dir)) std::abort();
    router = std::make_unique<server::Router>(*live, journal, metrics, *log);
  }
  ~World() {
    journal.stop();
    std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  std::unique_ptr<server::LiveConfig> live;
  std::unique_ptr<server::Logger> log;
  server::Metrics metrics;
  server::Journal journal;
  std::unique_ptr<server::Router> router;
  boost::asio::io_context ioc;
};

// A named coroutine, not a lambda: GCC 12 emits a lambda coroutine's symbol twice.
boost::asio::awaitable<void> answer(World& world, server::Request& request,
                                    const server::RequestInfo& info, bool& answered) {
  server::Reply reply = co_await world.router->handle(request, info);
  answered = reply.status != boost::beast::http::status::unknown;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  namespace http = boost::beast::http;
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec || !parser.is_done()) return 0;
  auto request = parser.release();
  server::RequestInfo info{"127.0.0.1:1", "fuzz"};
  bool answered = false;
  boost::asio::co_spawn(world.ioc, answer(world, request, info, answered),
                        [](std::exception_ptr e) {
                          if (e) std::abort();  // no exception may escape the request path
                        });
  world.ioc.run();
  world.ioc.restart();
  if (!answered) std::abort();
  return 0;
}
