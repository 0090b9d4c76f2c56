// Redox endpoint verification: the challenge is echoed as text/plain when the token is valid, by
// POST body or GET query, with the token in the body/query or in the verification-token header.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

namespace {

void check_echo(const HttpResponse& r, const std::string& challenge) {
  CHECK(r.status == 200);
  CHECK(r.header("Content-Type").value_or("<none>").find("text/plain") != std::string::npos);
  CHECK(r.body == challenge);
}

HttpRequest post_json(std::string body) {
  HttpRequest request;
  request.headers = {{"Content-Type", "application/json"}};
  request.body = std::move(body);
  return request;
}

}  // namespace

TEST_CASE("verification: POST and GET challenges are echoed - wrong tokens get 401") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  // POST, token in the body (Redox's endpoint verification).
  check_echo(http(server.port(),
                  post_json(R"({"verification-token":"test-token","challenge":"c-post-body-1"})")),
             "c-post-body-1");

  // POST, token in the body and in the header, as Redox sends it.
  auto both = post_json(R"({"verification-token":"test-token","challenge":"c-post-both-2"})");
  both.headers.emplace_back("verification-token", "test-token");
  check_echo(http(server.port(), both), "c-post-both-2");

  // POST, token only in the header.
  auto header_only = post_json(R"({"challenge":"c-post-header-3"})");
  header_only.headers.emplace_back("verification-token", "test-token");
  check_echo(http(server.port(), header_only), "c-post-header-3");

  // The fixture, with the server's token "test-token" in place of its "change-me".
  {
    std::string body = fixture("verification-challenge.json");
    const auto at = body.find("change-me");
    REQUIRE(at != std::string::npos);
    body.replace(at, 9, "test-token");
    check_echo(http(server.port(), post_json(body)), "2e73f864-a0e9-4764-a7d5-91fe5836db22");
  }

  // GET, token in the query.
  check_echo(
      http(server.port(), get("/webhook?challenge=c-get-query-4&verification-token=test-token")),
      "c-get-query-4");
  // GET, token in the header.
  auto get_header = get("/webhook?challenge=c-get-header-5");
  get_header.headers.emplace_back("verification-token", "test-token");
  check_echo(http(server.port(), get_header), "c-get-header-5");

  // Wrong or missing tokens.
  CHECK(
      http(server.port(), post_json(R"({"verification-token":"nope","challenge":"x1"})")).status ==
      401);
  CHECK(http(server.port(), post_json(R"({"challenge":"x2"})")).status == 401);
  CHECK(http(server.port(), get("/webhook?challenge=x3&verification-token=nope")).status == 401);
  CHECK(http(server.port(), get("/webhook?challenge=x4")).status == 401);
  auto get_wrong_header = get("/webhook?challenge=x5");
  get_wrong_header.headers.emplace_back("verification-token", "nope");
  const auto wrong = http(server.port(), get_wrong_header);
  CHECK(wrong.status == 401);
  CHECK(wrong.body.find("x5") == std::string::npos);

  // A challenge is not an event.
  CHECK(journal_count(server, "events") == 0);
  CHECK(journal_count(server, "quarantine") == 0);
}
