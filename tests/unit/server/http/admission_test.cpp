// Header-time admission (server/http/admission.hpp), the request body's memory, the challenge
// rules.
#include "server/http/admission.hpp"

#include <doctest/doctest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <string>

#include "server/http/reply.hpp"
#include "server/http/request_body.hpp"

using namespace fbr;
using namespace fbr::server;

namespace {

config::Config config_with_token() {
  config::Config c;
  c.verification_tokens = {"good"};
  return c;
}

RequestHeader header(http::verb method, std::string target, std::string token_header = {},
                     std::string token = {}) {
  RequestHeader h;
  h.method(method);
  h.target(target);
  if (!token_header.empty()) h.set(token_header, token);
  return h;
}

Admission decide(const RequestHeader& h, BodyFraming framing) {
  return admit(h, framing, config_with_token(), "/webhook");
}

}  // namespace

TEST_CASE("admission: a wrong header token is 401 at the header, whatever the body") {
  for (const char* field : {"verification-token", "Authorization"}) {
    CAPTURE(field);
    const std::string token = std::string(field) == "Authorization" ? "Bearer bad" : "bad";
    for (const BodyFraming& framing :
         {BodyFraming{41943040, false}, BodyFraming{0, false}, BodyFraming{std::nullopt, true}}) {
      const auto a = decide(header(http::verb::post, "/webhook", field, token), framing);
      REQUIRE(a.early.has_value());
      CHECK(a.early->status == http::status::unauthorized);
    }
  }
  // A GET challenge with a wrong header token too.
  const auto get =
      decide(header(http::verb::get, "/webhook?challenge=c", "verification-token", "x"),
             {std::nullopt, false});
  REQUIRE(get.early.has_value());
  CHECK(get.early->status == http::status::unauthorized);
}

TEST_CASE("admission: a valid header token admits a POST body up to max_body_bytes") {
  const auto h = header(http::verb::post, "/webhook", "verification-token", "good");
  const auto a = decide(h, {41943040, false});
  CHECK_FALSE(a.early.has_value());
  CHECK(a.body_limit == 41943040);
  CHECK(a.may_continue);
  const auto over = decide(h, {41943041, false});
  REQUIRE(over.early.has_value());
  CHECK(over.early->status == http::status::payload_too_large);
  const auto chunked = decide(h, {std::nullopt, true});
  CHECK(chunked.body_limit == 41943040);
  CHECK(chunked.over_limit_reply().status == http::status::payload_too_large);
  CHECK(chunked.may_continue);
}

TEST_CASE("admission: without a header token a body is read up to the small limit, past it 401") {
  const auto h = header(http::verb::post, "/webhook");
  const auto small = decide(h, {4096, false});
  CHECK_FALSE(small.early.has_value());
  CHECK(small.body_limit == 4096);
  CHECK(small.may_continue);
  const auto big = decide(h, {4097, false});
  REQUIRE(big.early.has_value());
  CHECK(big.early->status == http::status::unauthorized);
  const auto chunked = decide(h, {std::nullopt, true});
  CHECK_FALSE(chunked.early.has_value());
  CHECK(chunked.body_limit == 4096);
  CHECK(chunked.over_limit_reply().status == http::status::unauthorized);
  CHECK_FALSE(chunked.may_continue);  // no invitation without a length to check
  // The setting moves the limit.
  auto c = config_with_token();
  c.limits.max_unauthenticated_body_bytes = 512;
  CHECK(admit(h, {513, false}, c, "/webhook").early.has_value());
  CHECK_FALSE(admit(h, {512, false}, c, "/webhook").early.has_value());
}

TEST_CASE("admission: other paths and methods take only a small body, even with a valid token") {
  for (const char* target : {"/healthz", "/readyz", "/metrics", "/nowhere", "/webhook/x", "*"}) {
    CAPTURE(target);
    const auto a =
        decide(header(http::verb::post, target, "verification-token", "good"), {100000, false});
    REQUIRE(a.early.has_value());
    CHECK(a.early->status == http::status::payload_too_large);
    CHECK(decide(header(http::verb::get, target), {std::nullopt, false}).body_limit == 4096);
  }
  const auto put =
      decide(header(http::verb::put, "/webhook", "verification-token", "good"), {5000, false});
  REQUIRE(put.early.has_value());
  CHECK(put.early->status == http::status::payload_too_large);
}

TEST_CASE("request body: memory follows the bytes that arrived, not the announced length") {
  namespace beast = boost::beast;
  beast::http::request_parser<RequestBody> parser;
  parser.body_limit(boost::none);
  parser.eager(true);
  const std::string head = "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 41943040\r\n\r\n";
  beast::error_code ec;
  parser.put(boost::asio::buffer(head), ec);
  REQUIRE_FALSE(ec);
  const std::string part(1000, 'x');
  parser.put(boost::asio::buffer(part), ec);
  REQUIRE_FALSE(ec);
  CHECK(parser.get().body().size() == 1000);
  CHECK(parser.get().body().capacity() < 4096);  // string_body reserved all 40 MiB here
  for (int i = 0; i < 100; ++i)
    parser.put(boost::asio::buffer(part), ec);
  CHECK(parser.get().body().size() == 101000);
  CHECK(parser.get().body().capacity() < 2 * 101000);

  // A body that comes whole gets exactly its size.
  beast::http::request_parser<RequestBody> whole;
  whole.eager(true);
  const std::string request =
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'y');
  whole.put(boost::asio::buffer(request), ec);
  REQUIRE_FALSE(ec);
  REQUIRE(whole.is_done());
  CHECK(whole.get().body().capacity() == 5000);
}

TEST_CASE("challenge: echoed when 1 to 256 printable ASCII characters, else 400") {
  const auto uuid = challenge_reply("2e73f864-a0e9-4764-a7d5-91fe5836db22");
  CHECK(uuid.status == http::status::ok);
  CHECK(uuid.body == "2e73f864-a0e9-4764-a7d5-91fe5836db22");
  CHECK(uuid.content_type == "text/plain");
  CHECK(challenge_reply(std::string(256, '~')).status == http::status::ok);
  for (const std::string& bad :
       {std::string(), std::string(257, 'a'), std::string("a\r\nb"), std::string("\x1b[2J"),
        std::string("caf\xc3\xa9"), std::string("a\x7f")}) {
    CAPTURE(bad);
    const auto reply = challenge_reply(bad);
    CHECK(reply.status == http::status::bad_request);
    CHECK(reply.body.find("1 to 256 printable ASCII characters") != std::string::npos);
  }
}
