// The admin JSON API on the real binary, once per journal backend: the events table with every
// filter and its 400s, keyset pages while events arrive (nothing skipped or repeated), an event
// whole, replay of one event and bulk replay of the dead, the quarantine, and the status.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "tests/integration/admin_support.hpp"
#include "tests/integration/dispatch_support.hpp"

namespace fbr::itest::admin {
namespace {

using dispatch::poll_until;

/// Two handlers: `files` for every event, and `fail` (an exec that exits 1, one attempt: dead at
/// once) for the 202s only.
ConsoleOptions two_handlers(const TempDir& dir) {
  const auto script = dir.path() / "fail.sh";
  write_file(script, "echo boom >&2\nexit 1\n");
  ConsoleOptions options;
  options.handlers =
      R"("handlers": [{"name": "files", "type": "file", "dir": ")" + (dir.path() / "out").string() +
      R"("}, {"name": "fail", "type": "exec", "command": ["/bin/sh", ")" + script.string() +
      R"("], "when": {"status": [202]}, "retry": {"max_attempts": 1, )"
      R"("initial_backoff_ms": 100, "max_backoff_ms": 100}}])";
  return options;
}

std::vector<std::string> log_ids(const Console& console, const std::string& query) {
  const auto doc = console.get_json("/api/events" + query);
  std::vector<std::string> ids;
  for (const auto& e : doc["events"].GetArray())
    ids.emplace_back(e["log_id"].GetString());
  return ids;
}

std::string error_of(const Console& console, const std::string& target) {
  const HttpResponse response = console.get(target);
  INFO(target << " -> " << response.body);
  CHECK(response.status == 400);
  return json_str(parse_json(response.body), "/error");
}

/// Waits until the event's delivery to `handler` is in `state` (through the API).
bool wait_for_delivery(const Console& console, const std::string& log_id,
                       const std::string& handler, const std::string& state,
                       std::chrono::milliseconds timeout = 10s) {
  return poll_until(
      [&] {
        const auto response = console.get("/api/events/" + log_id);
        if (response.status != 200) return false;
        const auto doc = parse_json(response.body);
        for (const auto& d : doc["deliveries"].GetArray()) {
          if (d["handler"].GetString() == handler && d["state"].GetString() == state) return true;
        }
        return false;
      },
      timeout, 50ms);
}

TEST_CASE("admin api: events newest first with their rows and every filter narrowing them") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir dir;
    Console console(backend, two_handlers(dir));
    if (skip_without_console(console)) return;
    const std::string first = new_log_id(), second = new_log_id(), third = new_log_id();
    const std::string attempt = new_log_id();
    console.post_event_ok(event_body(first, true, 200, attempt));
    console.post_event_ok(event_body(second, false, 200));
    console.post_event_ok(event_body(third, true, 202));
    REQUIRE(wait_for_delivery(console, third, "fail", "dead"));
    REQUIRE(wait_for_delivery(console, first, "files", "done"));

    const auto page = console.get_json("/api/events");
    REQUIRE(page["events"].Size() == 3);
    CHECK(page["next_cursor"].IsNull());
    CHECK(log_ids(console, "") == std::vector<std::string>{third, second, first});
    const auto& row = page["events"][0];
    CHECK(json_str(row, "/key") == third);
    CHECK(json_raw(row, "/status") == "202");
    CHECK(json_raw(row, "/test") == "true");
    CHECK(row["received_at"].IsString());
    CHECK(row["outputs"].IsInt64());
    CHECK(json_raw(row, "/attempts") == "1");
    CHECK(row["deliveries"].Size() == 2);

    CHECK(log_ids(console, "?status=202") == std::vector<std::string>{third});
    CHECK(log_ids(console, "?status=200") == std::vector<std::string>{second, first});
    CHECK(log_ids(console, "?test=false") == std::vector<std::string>{second});
    CHECK(log_ids(console, "?test=true") == std::vector<std::string>{third, first});
    CHECK(log_ids(console, "?handler=fail") == std::vector<std::string>{third});
    CHECK(log_ids(console, "?state=dead") == std::vector<std::string>{third});
    CHECK(log_ids(console, "?state=dead&test=false").empty());
    CHECK(log_ids(console, "?q=" + second) == std::vector<std::string>{second});
    CHECK(log_ids(console, "?q=" + attempt) == std::vector<std::string>{first});
    CHECK(log_ids(console, "?q=" + new_log_id()).empty());
    CHECK(log_ids(console, "?since=2000-01-01").size() == 3);
    CHECK(log_ids(console, "?until=2000-01-01T00:00:00Z").empty());
    CHECK(log_ids(console, "?since=2999-01-01").empty());
    // limit is clamped to 1..500, not refused.
    const auto one = console.get_json("/api/events?limit=1");
    CHECK(one["events"].Size() == 1);
    CHECK(one["next_cursor"].IsString());
    CHECK(console.get_json("/api/events?limit=0")["events"].Size() == 1);
    CHECK(console.get_json("/api/events?limit=100000")["events"].Size() == 3);
  }
}

TEST_CASE("admin api: the hostile twin: every bad parameter is a 400 that names it") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir dir;
    Console console(backend, two_handlers(dir));
    if (skip_without_console(console)) return;
    CHECK(error_of(console, "/api/events?state=bogus").rfind("state:", 0) == 0);
    CHECK(error_of(console, "/api/events?status=201").rfind("status:", 0) == 0);
    CHECK(error_of(console, "/api/events?test=yes").rfind("test:", 0) == 0);
    CHECK(error_of(console, "/api/events?handler=nope").rfind("handler:", 0) == 0);
    CHECK(error_of(console, "/api/events?since=yesterday").rfind("since:", 0) == 0);
    CHECK(error_of(console, "/api/events?until=2026-13-45").rfind("until:", 0) == 0);
    CHECK(error_of(console, "/api/events?limit=ten").rfind("limit:", 0) == 0);
    CHECK(error_of(console, "/api/events?color=red").rfind("color:", 0) == 0);
    CHECK(error_of(console, "/api/events?state=dead&state=done").rfind("state:", 0) == 0);
    CHECK(error_of(console, "/api/events?cursor=not-a-cursor").rfind("cursor:", 0) == 0);
    CHECK(error_of(console, "/api/events?q=" + std::string(600, 'x')).rfind("q:", 0) == 0);
    CHECK(error_of(console, "/api/quarantine?limit=x").rfind("limit:", 0) == 0);
    CHECK(error_of(console, "/api/quarantine?cursor=%00").rfind("cursor:", 0) == 0);
  }
}

TEST_CASE("admin api: keyset pages while events arrive skip and repeat nothing") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    if (skip_without_console(console)) return;
    std::vector<std::string> before;
    for (int i = 0; i < 23; ++i) {
      before.push_back(new_log_id());
      console.post_event_ok(event_body(before.back()));
    }
    std::vector<std::string> seen;
    std::string cursor;
    for (int page = 0; page < 20; ++page) {
      const auto doc = console.get_json("/api/events?limit=5" +
                                        (cursor.empty() ? "" : "&cursor=" + url_encode(cursor)));
      for (const auto& e : doc["events"].GetArray())
        seen.emplace_back(e["log_id"].GetString());
      // Newer events arrive between the pages: they must not shift the older pages.
      console.post_event_ok(event_body(new_log_id()));
      console.post_event_ok(event_body(new_log_id()));
      if (doc["next_cursor"].IsNull()) break;
      cursor = doc["next_cursor"].GetString();
    }
    const std::set<std::string> unique(seen.begin(), seen.end());
    CHECK(unique.size() == seen.size());                                      // nothing repeated
    CHECK(seen == std::vector<std::string>(before.rbegin(), before.rend()));  // nothing skipped
  }
}

TEST_CASE("admin api: an event whole with its body, warnings, attempts and deliveries") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir dir;
    Console console(backend, two_handlers(dir));
    if (skip_without_console(console)) return;
    const std::string id = new_log_id();
    const std::string body = event_body(id, true, 202);
    console.post_event_ok(body);
    console.post_event_ok(body);  // a second attempt (a duplicate)
    REQUIRE(wait_for_delivery(console, id, "fail", "dead"));
    const auto doc = console.get_json("/api/events/" + id);
    CHECK(json_str(doc, "/event/log_id") == id);
    CHECK(json_str(doc, "/body") == body);  // byte for byte
    CHECK(doc["warnings"].IsArray());
    // JetStream stores no duplicate (README: the NATS journal's approximations).
    REQUIRE(doc["attempts"].Size() == (backend == "nats" ? 1U : 2U));
    CHECK(json_raw(doc, "/attempts/0/duplicate") == "false");
    if (backend == "sqlite") CHECK(json_raw(doc, "/attempts/1/duplicate") == "true");
    CHECK(doc["attempts"][0]["remote_addr"].IsString());
    CHECK(doc["attempts"][0]["request_id"].IsString());
    bool saw_fail = false;
    for (const auto& d : doc["deliveries"].GetArray()) {
      const std::string handler = d["handler"].GetString();
      CHECK(json_str(d, "/type") == (handler == "fail" ? "exec" : "file"));
      if (handler != "fail") continue;
      saw_fail = true;
      CHECK(json_str(d, "/state") == "dead");
      CHECK(json_raw(d, "/attempts") == "1");
      REQUIRE(d["history"].Size() == 1);
      CHECK(json_str(d, "/history/0/outcome") == "dead");
      CHECK(d["history"][0]["duration_ms"].IsInt64());
      CHECK(json_str(d, "/history/0/error").find("exit status 1") != std::string::npos);
    }
    CHECK(saw_fail);
    // The percent-encoded key is decoded; an unknown one is 404.
    CHECK(console.get("/api/events/" + url_encode(id)).status == 200);
    CHECK(console.get("/api/events/" + new_log_id()).status == 404);
    CHECK(console.get("/api/events/" + url_encode("../../etc/passwd")).status == 404);
  }
}

TEST_CASE("admin api: replay of one event and bulk replay of the dead") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir dir;
    Console console(backend, two_handlers(dir));
    if (skip_without_console(console)) return;
    const std::string a = new_log_id(), b = new_log_id();
    console.post_event_ok(event_body(a, true, 202));
    console.post_event_ok(event_body(b, true, 202));
    REQUIRE(wait_for_delivery(console, a, "fail", "dead"));
    REQUIRE(wait_for_delivery(console, b, "fail", "dead"));

    const HttpResponse one = console.post("/api/events/" + a + "/replay?handler=fail");
    INFO(one.body);
    CHECK(one.status == 200);
    CHECK(one.body == R"({"replayed":["fail"]})");
    // It runs again at once and is dead again, with a second attempt in its history.
    CHECK(poll_until(
        [&] {
          const auto doc = console.get_json("/api/events/" + a);
          for (const auto& d : doc["deliveries"].GetArray()) {
            if (std::string(d["handler"].GetString()) == "fail") {
              return std::string(d["state"].GetString()) == "dead" && d["history"].Size() == 2;
            }
          }
          return false;
        },
        10s, 50ms));
    CHECK(console.post("/api/events/" + a + "/replay?handler=nope").status == 400);
    CHECK(console.post("/api/events/" + new_log_id() + "/replay").status == 404);
    CHECK(console.post("/api/events/" + a + "/replay?bogus=1").status == 400);
    CHECK(console.get("/api/events/" + a + "/replay").status == 405);

    REQUIRE(wait_for_delivery(console, a, "fail", "dead"));
    const HttpResponse bulk = console.post("/api/deliveries/replay?state=dead");
    INFO(bulk.body);
    REQUIRE(bulk.status == 200);
    CHECK(json_raw(parse_json(bulk.body), "/replayed") == "2");
    CHECK(console.post("/api/deliveries/replay?state=done").status == 400);
    CHECK(console.post("/api/deliveries/replay").status == 400);
    CHECK(console.server().wait_for_log("admin_bulk_replay"));  // the log is flushed every 100 ms
  }
}

TEST_CASE("admin api: the quarantine lists kept payloads with their errors and shows one whole") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    ConsoleOptions options;
    options.invalid_payloads = "quarantine";
    Console console(backend, options);
    if (skip_without_console(console)) return;
    const std::string body = fixture("invalid-several-errors.json");
    REQUIRE(http(console.server().port(), post_event(body)).status == 200);
    const auto list = console.get_json("/api/quarantine");
    REQUIRE(list["items"].Size() == 1);
    CHECK(list["next_cursor"].IsNull());
    const auto& item = list["items"][0];
    CHECK_FALSE(item.HasMember("body"));
    CHECK(item["errors"].Size() >= 2);
    CHECK(item["errors"][0]["path"].IsString());
    CHECK(json_raw(item, "/bytes") == std::to_string(body.size()));
    const std::string id = item["id"].GetString();
    const auto whole = console.get_json("/api/quarantine/" + url_encode(id));
    CHECK(json_str(whole, "/body") == body);
    CHECK(console.get("/api/quarantine/999999").status == 404);
    CHECK(console.get("/api/quarantine/" + url_encode("1; DROP TABLE x")).status == 404);
  }
}

TEST_CASE("admin api: the status says ready with counts, latency, version and backend") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir dir;
    Console console(backend, two_handlers(dir));
    if (skip_without_console(console)) return;
    const std::string id = new_log_id();
    console.post_event_ok(event_body(id, true, 202));
    REQUIRE(wait_for_delivery(console, id, "fail", "dead"));
    const auto status = console.get_json("/api/status");
    CHECK(json_raw(status, "/ready") == "true");
    CHECK(status["reasons"].Size() == 0);
    CHECK(status["checks"].Size() >= 1);
    CHECK(json_str(status, "/backend") == backend);
    CHECK(status["version"].IsString());
    CHECK(status["uptime_s"].IsInt64());
    CHECK(json_raw(status, "/events") == "1");
    CHECK(json_raw(status, "/deliveries/dead") == "1");
    CHECK(status["commit_latency_ms"]["p50"].IsNumber());
    CHECK(status["commit_latency_ms"]["p99"].IsNumber());
    REQUIRE(status["events_per_minute"].Size() == 60);
    CHECK(json_raw(status, "/events_per_minute/59") == "1");
  }
}

}  // namespace
}  // namespace fbr::itest::admin
