// What operators see: request IDs, health and readiness probes, structured logs.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

TEST_CASE("observability: X-Request-Id is echoed when sent and generated otherwise") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  const std::string id = new_log_id();
  auto request = post_event(event_with_log_id(id));
  request.headers.emplace_back("X-Request-Id", "itest-req-0042");
  const auto echoed = http(server.port(), request);
  CHECK(echoed.status == 200);
  CHECK(echoed.header("X-Request-Id").value_or("<none>") == "itest-req-0042");
  CHECK(journal_count(server, "event_attempts", "request_id = ?", {"itest-req-0042"}) == 1);
  // The request's own line (the event line carries the request ID too).
  const auto line = server.wait_for_line({"method=POST", "request_id=itest-req-0042"});
  REQUIRE_MESSAGE(line.has_value(), "no request log line with request_id=itest-req-0042");
  for (const std::string field : {"path=/webhook", "status=200", "duration"}) {
    CHECK_MESSAGE(line->find(field) != std::string::npos, "request line lacks ", field);
  }

  // Generated, different each time, on every kind of response.
  const auto a = http(server.port(), post_event(event_with_log_id(new_log_id())));
  const auto b = http(server.port(), post_event(event_with_log_id(new_log_id())));
  REQUIRE(a.header("X-Request-Id").has_value());
  REQUIRE(b.header("X-Request-Id").has_value());
  CHECK_FALSE(a.header("X-Request-Id")->empty());
  CHECK(*a.header("X-Request-Id") != *b.header("X-Request-Id"));
  for (const auto& r :
       {http(server.port(), post_event(event_with_log_id(new_log_id()), "wrong")),  // 401
        http(server.port(), post_event("{")),                                       // 400
        http(server.port(), get("/webhook")),                                       // 405
        http(server.port(), get("/healthz")), http(server.port(), get("/readyz"))}) {
    CAPTURE(r.status);
    CHECK_FALSE(r.header("X-Request-Id").value_or("").empty());
  }
  auto probe = get("/healthz");
  probe.headers.emplace_back("X-Request-Id", "itest-probe-7");
  CHECK(http(server.port(), probe).header("X-Request-Id").value_or("<none>") == "itest-probe-7");
}

TEST_CASE("observability: /healthz and /readyz answer 200 while serving") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  CHECK(http(server.port(), get("/healthz")).status == 200);
  CHECK(http(server.port(), get("/readyz")).status == 200);
}

TEST_CASE("observability: log.format json writes one JSON object per line with log_id") {
  TempDir dir;
  ServerConfig config;
  config.log_format = "json";
  Server server(dir, config);  // the port is read from the JSON "listening" line
  INFO("server log tail:\n", server.log_tail());

  const std::string id = new_log_id();
  auto request = post_event(event_with_log_id(id));
  request.headers.emplace_back("X-Request-Id", "itest-json-log-1");
  REQUIRE(http(server.port(), request).status == 200);
  CHECK(
      http(server.port(), post_event(event_with_log_id(new_log_id()), "wrong-json-token")).status ==
      401);
  REQUIRE(server.wait_for_log(id));
  REQUIRE(server.wait_for_log("itest-json-log-1"));
  CHECK(server.terminate() == 0);  // everything flushed

  bool event_line = false;
  bool request_line = false;
  int lines = 0;
  for (const auto& line : server.log_lines()) {
    if (line.empty()) continue;
    ++lines;
    CAPTURE(line);
    const auto doc = parse_json(line);
    CHECK_FALSE(doc.HasParseError());
    if (doc.HasParseError()) continue;
    CHECK(doc.IsObject());
    if (json_str(doc, "/log_id") == id) event_line = true;
    if (json_str(doc, "/request_id") == "itest-json-log-1") request_line = true;
  }
  CHECK(lines >= 3);  // at least: listening, the request, the event
  CHECK_MESSAGE(event_line, "no JSON line with \"log_id\":\"", id, "\"");
  CHECK_MESSAGE(request_line, "no JSON line with \"request_id\":\"itest-json-log-1\"");
  CHECK(server.log().find("wrong-json-token") == std::string::npos);
  CHECK(server.log().find("test-token") == std::string::npos);
}
