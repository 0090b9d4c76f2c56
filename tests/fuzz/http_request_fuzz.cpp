// libFuzzer target: the HTTP request path in-process, in the session's order — Beast's request
// parser with the server's limits reads the header, the header-time admission (token check, body
// limit; server/http/admission.hpp) decides, then the body is parsed with the admitted limit and
// the Router answers (authentication, challenges, model validation, journal commit).
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

#include "server/http/admission.hpp"
#include "server/http/router.hpp"
#include "server/journal/sqlite/journal.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace {

using namespace fbr;

struct World {
  World() {
    // The journal on tmpfs when there is one: commits fsync, and fuzzing commits many events.
    std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = base + "/fbr-fuzz-XXXXXX";
    dir = ::mkdtemp(pattern.data());
    config::Config c;  // the server's default limits
    c.verification_tokens = {"fuzz-token"};
    c.data_dir = dir / "data";
    c.invalid_payloads = config::InvalidPayloads::kQuarantine;
    live = std::make_unique<server::LiveConfig>(c);
    log = std::make_unique<server::Logger>(config::Log{"off", config::LogFormat::kText},
                                           std::make_shared<spdlog::sinks::null_sink_mt>());
    if (journal.open(c.data_dir)) std::abort();
    router = std::make_unique<server::Router>(*live, journal, metrics, *log);
    config = c;
  }
  config::Config config;
  ~World() {
    journal.stop();
    std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  std::unique_ptr<server::LiveConfig> live;
  std::unique_ptr<server::Logger> log;
  server::Metrics metrics;
  server::SqliteJournal journal;
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
  const auto& config = world.config;
  http::request_parser<server::RequestBody> parser;
  parser.header_limit(config.limits.max_header_bytes);
  parser.body_limit(boost::none);  // as the session: admission sets it after the header
  boost::beast::error_code ec;
  std::size_t used = parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_header_done()) return 0;

  server::RequestInfo info{"127.0.0.1:1", "fuzz"};
  const server::Admission admission = world.router->admit(parser.get(), framing_of(parser), info);
  // What may never happen: more than the small limit for a request that is not an authenticated
  // POST to the webhook, or an early answer that is not an error.
  const bool authenticated =
      server::token_valid(server::header_token(parser.get()), config.verification_tokens);
  const std::uint64_t small = config.limits.max_unauthenticated_body_bytes;
  if (admission.early) {
    if (static_cast<unsigned>(admission.early->status) < 400) std::abort();
    return 0;
  }
  if (admission.body_limit > small &&
      (!authenticated || parser.get().method() != http::verb::post)) {
    std::abort();
  }
  if (parser.content_length() && *parser.content_length() > admission.body_limit) std::abort();

  parser.body_limit(admission.body_limit);
  parser.eager(true);
  if (!parser.is_done()) {
    used += parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::body_limit) {
      const auto status = admission.over_limit_reply().status;
      if (status != http::status::unauthorized && status != http::status::payload_too_large) {
        std::abort();
      }
      if (parser.get().body().size() > admission.body_limit) std::abort();
      return 0;
    }
    if (!ec && !parser.is_done()) parser.put_eof(ec);
  }
  if (ec || !parser.is_done()) return 0;
  auto request = parser.release();
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
