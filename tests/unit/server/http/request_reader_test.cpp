// Reading one request (server/http/request_reader.hpp) over Beast's in-memory stream: the limits
// and early answers of the session without a socket.
// GCC 12 takes the coroutine frame's sized operator delete for a mismatch once the reader is
// instantiated for the test stream and inlined here (a false positive; the service's and the
// fuzz target's instantiations do not trip it).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
#include "server/http/request_reader.hpp"

#include <doctest/doctest.h>
#include <spdlog/sinks/null_sink.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <memory>
#include <string>
#include <vector>

#include "server/support/live_config.hpp"

using namespace fbr;
using namespace fbr::server;

namespace {

/// A journal that is never reached: reading a request commits nothing.
class NoJournal final : public Journal {
 public:
  void commit(CommitRequest, Callback done) override { done({}); }
  bool writable() override { return true; }
  void stop() override {}
};

config::Config reader_config() {
  config::Config c;
  c.verification_tokens = {"good"};
  return c;
}

struct Connection {
  boost::asio::io_context ioc;
  config::Config config = reader_config();
  LiveConfig live{config};
  NoJournal journal;
  Metrics metrics;
  Logger log{config::Log{"off", config::LogFormat::kText},
             std::make_shared<spdlog::sinks::null_sink_mt>()};
  Router router{live, journal, metrics, log};
  std::atomic<std::int64_t> in_flight{0};
  boost::beast::test::stream server{ioc};
  boost::beast::test::stream client{ioc};
  RequestReader reader{config.limits, router, in_flight, "127.0.0.1:9"};

  /// The client sends `bytes`, then closes its side.
  explicit Connection(const std::string& bytes) {
    server.connect(client);
    server.append(bytes);
    server.close_remote();
  }

  Incoming read();
};

// A named coroutine, not a lambda: GCC 12 warns on a lambda coroutine's frame.
boost::asio::awaitable<void> read_into(Connection& c, std::optional<Incoming>& result) {
  result = co_await c.reader.read(c.server);
}

Incoming Connection::read() {
  std::optional<Incoming> result;
  boost::asio::co_spawn(ioc, read_into(*this, result),
                        [](std::exception_ptr e) { REQUIRE_FALSE(e); });
  ioc.run();
  ioc.restart();
  REQUIRE(result.has_value());
  return std::move(*result);
}

const std::string kEvent = R"({"challenge":"C-1"})";

std::string post(const std::string& headers, const std::string& body = kEvent) {
  return "POST /webhook HTTP/1.1\r\nHost: x\r\n" + headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("request reader: a whole request, counted in flight until it is answered") {
  Connection c(post("verification-token: good\r\nX-Request-Id: req-7\r\n") +
               post("verification-token: good\r\n"));
  {
    Incoming in = c.read();
    CHECK_FALSE(in.closed);
    CHECK_FALSE(in.early.has_value());
    CHECK(in.header_read);
    CHECK(in.request.body() == kEvent);
    CHECK(in.bytes_in == kEvent.size());
    CHECK(in.info.request_id == "req-7");
    CHECK(in.info.remote_addr == "127.0.0.1:9");
    CHECK(c.in_flight.load() == 1);
  }
  CHECK(c.in_flight.load() == 0);
  // Pipelined: the second request from the same buffer, with an ID of our own.
  Incoming second = c.read();
  CHECK_FALSE(second.early.has_value());
  CHECK(second.request.body() == kEvent);
  CHECK(second.info.request_id.size() == 36);
  // Then the peer's EOF: nothing to answer, nothing in flight.
  second = Incoming{};
  Incoming end = c.read();
  CHECK(end.closed);
  CHECK(c.in_flight.load() == 0);
}

TEST_CASE("request reader: a header over max_header_bytes is 431") {
  Connection c(post("X-Big: " + std::string(16 * 1024, 'a') + "\r\n"));
  Incoming in = c.read();
  REQUIRE(in.early.has_value());
  CHECK(in.early->status == http::status::request_header_fields_too_large);
  CHECK_FALSE(in.header_read);
}

TEST_CASE("request reader: a Transfer-Encoding other than one chunked is 400") {
  for (const char* te : {"gzip", "gzip, chunked", "chunked, chunked"}) {
    CAPTURE(te);
    Connection c(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nverification-token: good\r\n"
        "Transfer-Encoding: " +
        std::string(te) + "\r\n\r\n0\r\n\r\n");
    Incoming in = c.read();
    REQUIRE(in.early.has_value());
    CHECK(in.early->status == http::status::bad_request);
    CHECK(in.early->body.find("Transfer-Encoding") != std::string::npos);
    CHECK(in.header_read);
  }
}

TEST_CASE("request reader: admission answers at the header, the body limit past it") {
  // A wrong header token with a large announced body: 401, no body byte read.
  Connection wrong(
      "POST /webhook HTTP/1.1\r\nHost: x\r\nverification-token: bad\r\n"
      "Content-Length: 41943040\r\n\r\n" +
      std::string(1000, 'x'));
  Incoming in = wrong.read();
  REQUIRE(in.early.has_value());
  CHECK(in.early->status == http::status::unauthorized);
  CHECK(in.bytes_in == 0);
  // No header token and a chunked body past the small limit: 401 at the limit.
  const std::string chunk(5000, 'y');
  Connection tokenless("POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                       std::string("1388\r\n") + chunk + "\r\n0\r\n\r\n");
  Incoming cut = tokenless.read();
  REQUIRE(cut.early.has_value());
  CHECK(cut.early->status == http::status::unauthorized);
  CHECK(cut.bytes_in <= 4096);
  // A valid token and a body past max_body_bytes announced: 413.
  Connection big(
      "POST /webhook HTTP/1.1\r\nHost: x\r\nverification-token: good\r\n"
      "Content-Length: 41943041\r\n\r\n");
  Incoming too_large = big.read();
  REQUIRE(too_large.early.has_value());
  CHECK(too_large.early->status == http::status::payload_too_large);
}

TEST_CASE("request reader: 100 Continue only when admission invites the body") {
  Connection valid(post("verification-token: good\r\nExpect: 100-continue\r\n"));
  Incoming in = valid.read();
  CHECK_FALSE(in.early.has_value());
  CHECK(in.request.body() == kEvent);
  CHECK(valid.client.str().starts_with("HTTP/1.1 100 Continue\r\n"));

  Connection wrong(post("verification-token: bad\r\nExpect: 100-continue\r\n"));
  Incoming refused = wrong.read();
  REQUIRE(refused.early.has_value());
  CHECK(refused.early->status == http::status::unauthorized);
  CHECK(wrong.client.str().empty());
}

TEST_CASE("request reader: a body cut short is nothing to answer") {
  Connection c(
      "POST /webhook HTTP/1.1\r\nHost: x\r\nverification-token: good\r\n"
      "Content-Length: 100\r\n\r\n{\"half");
  Incoming in = c.read();
  CHECK(in.closed);
  CHECK_FALSE(in.early.has_value());
}
