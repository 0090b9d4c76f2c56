// libFuzzer target: the server's own session code in-process. The input is what a client sends on
// one connection; Beast's in-memory stream carries it to serve_requests (server/http/session.hpp),
// the loop every TCP and TLS connection runs: RequestReader with the default limits of a config
// read by the service's own loader (header limit → 431, the Transfer-Encoding check, header-time
// admission, 100-continue, body limits), the Router with the body-time admission step
// (admission.hpp: token, challenge, 415, parse, quarantine, handler matching), the commit to a
// real SQLite journal, and the answers written back, pipelined or not.
#include <spdlog/sinks/null_sink.h>
#include <stdlib.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "server/http/router.hpp"
#include "server/http/session.hpp"
#include "server/journal/sqlite/journal.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace {

using namespace fbr;
namespace beast = boost::beast;
namespace http = beast::http;

config::Config load(const std::filesystem::path& data_dir) {
  // Only what the target needs is set; every limit is the service's default.
  const std::string text = R"({
    "verification_tokens": ["fuzz-token"],
    "data_dir": ")" + data_dir.string() +
                           R"(",
    "invalid_payloads": "quarantine",
    "handlers": [
      {"name": "complete", "type": "file", "dir": ")" +
                           (data_dir / "complete").string() + R"(", "when": {"status": [200]}},
      {"name": "all", "type": "file", "dir": ")" +
                           (data_dir / "all").string() + R"("}
    ]
  })";
  auto loaded = config::parse_config(text, {}, "http_request_fuzz");
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors) std::fprintf(stderr, "config: %s\n", error.c_str());
    std::abort();
  }
  return *loaded.config;
}

struct World {
  World() {
    // The journal on tmpfs when there is one: commits fsync, and fuzzing commits many events.
    std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = base + "/fbr-fuzz-XXXXXX";
    dir = ::mkdtemp(pattern.data());
    config = load(dir / "data");
    live = std::make_unique<server::LiveConfig>(config);
    log = std::make_unique<server::Logger>(config::Log{"off", config::LogFormat::kText},
                                           std::make_shared<spdlog::sinks::null_sink_mt>());
    if (auto error = journal.open(config.data_dir)) {
      std::fprintf(stderr, "journal: %s\n", error->c_str());
      std::abort();
    }
    router = std::make_unique<server::Router>(*live, journal, metrics, *log);
    sessions.reset(new server::Sessions{config.limits, *router, metrics, *log});
  }
  ~World() {
    journal.stop();
    std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  config::Config config;
  std::unique_ptr<server::LiveConfig> live;
  std::unique_ptr<server::Logger> log;
  server::Metrics metrics;
  server::SqliteJournal journal;
  std::unique_ptr<server::Router> router;
  std::unique_ptr<server::Sessions> sessions;
  boost::asio::io_context ioc;
};

bool starts_response(boost::asio::const_buffer rest) {
  return std::string_view(static_cast<const char*>(rest.data()), rest.size())
      .starts_with("HTTP/1.");
}

/// What may never happen in what the session wrote: bytes that are not a sequence of HTTP
/// responses, an informational answer other than 100 Continue, or a 5xx other than 503.
void check_answers(const std::string& written) {
  boost::asio::const_buffer rest = boost::asio::buffer(written);
  while (rest.size() > 0) {
    http::response_parser<http::empty_body> parser;
    parser.skip(true);  // the body only counted: Content-Length is checked against the bytes
    parser.body_limit(boost::none);
    beast::error_code ec;
    const std::size_t used = parser.put(rest, ec);
    if (ec || !parser.is_header_done()) std::abort();
    rest += used;
    const unsigned status = parser.get().result_int();
    if (status < 200) {
      if (status != 100) std::abort();
      continue;
    }
    if (status >= 500 && status != 503) std::abort();
    // Every answer has a Content-Length; an answer to HEAD has no body after it.
    if (!parser.content_length()) std::abort();
    const auto length = static_cast<std::size_t>(*parser.content_length());
    const bool body_follows =
        length <= rest.size() && (length == rest.size() || starts_response(rest + length));
    if (body_follows) {
      rest += length;
    } else if (rest.size() != 0 && !starts_response(rest)) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  beast::test::stream server(world.ioc);
  beast::test::stream client(world.ioc);
  server.connect(client);
  // The client sends the input and closes its side: the session reads it all, then EOF.
  server.append(std::string_view(reinterpret_cast<const char*>(data), size));
  server.close_remote();
  bool done = false;
  boost::asio::co_spawn(world.ioc, server::serve_requests(*world.sessions, server, "127.0.0.1:1"),
                        [&done](std::exception_ptr e) {
                          if (e) std::abort();  // no exception may escape a session
                          done = true;
                        });
  world.ioc.run();
  world.ioc.restart();
  if (!done || world.sessions->in_flight.load() != 0) std::abort();
  check_answers(client.str());
  return 0;
}
