// The edges of POST /webhook: body size (413), content type (415), methods (405).
#include <doctest/doctest.h>

#include <cstddef>
#include <string>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

namespace {

constexpr std::size_t kDefaultMaxBody = 41943040;  // 40 MiB, PRODUCT.md's default

/// A valid event of exactly `size` bytes (an unknown padding field makes up the difference).
std::string event_of_size(const std::string& log_id, std::size_t size) {
  const std::size_t base = event_with_log_id(log_id).size();
  const std::size_t overhead = std::string(R"("padding":"",)").size();
  REQUIRE(size >= base + overhead);
  std::string body = event_with_padding(log_id, size - base - overhead);
  REQUIRE(body.size() == size);
  return body;
}

}  // namespace

TEST_CASE("limits: a body of 40 MiB + 1 byte gets 413 and the connection is closed") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  const std::string body = event_of_size(new_log_id(), kDefaultMaxBody + 1);

  SUBCASE("announced by Content-Length") {
    const auto ex = raw_exchange(server.port(), serialize(post_event(body)), 1, true, 60s);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "responses: ", ex.responses.size(),
                    " received: ", ex.received.substr(0, 300));
    CHECK(ex.responses[0].status == 413);
    CHECK_MESSAGE(ex.closed, "the server kept the connection open after 413");
  }
  SUBCASE("sent with chunked transfer encoding") {
    auto request = post_event(body);
    request.chunked = true;
    const auto ex = raw_exchange(server.port(), serialize(request), 1, true, 60s);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "responses: ", ex.responses.size(),
                    " received: ", ex.received.substr(0, 300));
    CHECK(ex.responses[0].status == 413);
    CHECK_MESSAGE(ex.closed, "the server kept the connection open after 413");
  }

  CHECK(journal_count(server, "events") == 0);
  CHECK(journal_count(server, "event_attempts") == 0);
  CHECK(http(server.port(), get("/healthz")).status == 200);  // and it still serves
}

TEST_CASE("limits: a body of exactly max_body_bytes is accepted") {
  TempDir dir;
  ServerConfig config;
  config.extra_members = R"("max_body_bytes": 65536)";
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());

  const std::string at_limit_id = new_log_id();
  const auto at_limit = http(server.port(), post_event(event_of_size(at_limit_id, 65536)));
  CHECK(at_limit.status == 200);
  CHECK(journal_count(server, "events", "log_id = ?", {at_limit_id}) == 1);

  const auto over = raw_exchange(
      server.port(), serialize(post_event(event_of_size(new_log_id(), 65537))), 1, true, 30s);
  REQUIRE(over.responses.size() == 1);
  CHECK(over.responses[0].status == 413);
  CHECK(over.closed);
  CHECK(journal_count(server, "events") == 1);
}

TEST_CASE("limits: a content type that is not JSON gets 415 - JSON types and none are accepted") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  for (const std::string type : {"text/plain", "application/x-www-form-urlencoded", "text/xml"}) {
    CAPTURE(type);
    auto request = post_event(event_with_log_id(new_log_id()));
    request.headers[0].second = type;
    CHECK(http(server.port(), request).status == 415);
  }
  CHECK(journal_count(server, "events") == 0);

  for (const std::string type : {"application/json; charset=utf-8", "application/fhir+json",
                                 "application/vnd.redox+json", ""}) {
    CAPTURE(type);
    const std::string id = new_log_id();
    auto request = post_event(event_with_log_id(id));
    if (type.empty()) {
      request.headers.erase(request.headers.begin());  // no Content-Type at all
    } else {
      request.headers[0].second = type;
    }
    CHECK(http(server.port(), request).status == 200);
    CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);
  }
}

TEST_CASE("limits: other methods on the path get 405 with Allow") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  const auto plain_get = http(server.port(), get("/webhook"));
  CHECK(plain_get.status == 405);
  REQUIRE(plain_get.header("Allow").has_value());
  CHECK(plain_get.header("Allow")->find("POST") != std::string::npos);

  for (const std::string method : {"PUT", "DELETE", "PATCH"}) {
    CAPTURE(method);
    auto request = post_event(event_with_log_id(new_log_id()));
    request.method = method;
    const auto r = http(server.port(), request);
    CHECK(r.status == 405);
    REQUIRE(r.header("Allow").has_value());
    CHECK(r.header("Allow")->find("POST") != std::string::npos);
  }
  CHECK(journal_count(server, "events") == 0);
}
