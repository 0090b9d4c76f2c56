// GET /api/stream on the real binary: a committed event reaches an open stream within a second of
// its 200, a quarantined payload and a delivery's transitions too, a keep-alive comment comes every
// 15 s, and a hundred open streams cost the server under 16 MiB.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/admin_support.hpp"

namespace fbr::itest::admin {
namespace {

std::string file_handler(const TempDir& dir) {
  return R"("handlers": [{"name": "files", "type": "file", "dir": ")" +
         (dir.path() / "out").string() + R"("}])";
}

TEST_CASE("admin stream: a new event reaches an open stream within a second of its 200") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir out;
    ConsoleOptions options;
    options.handlers = file_handler(out);
    Console console(backend, options);
    EventStream stream(console.admin_port());
    CHECK(stream.status_line() == "HTTP/1.1 200 OK");
    CHECK(stream.received().find("Content-Type: text/event-stream") != std::string::npos);
    CHECK(stream.received().find("Cache-Control: no-store") != std::string::npos);

    const std::string id = new_log_id();
    console.post_event_ok(event_body(id));
    const auto answered = std::chrono::steady_clock::now();
    const auto data = stream.wait_for("event", id, 1s);
    REQUIRE_MESSAGE(data.has_value(), stream.received());
    CHECK(ms_since(answered) < 1000);
    const auto row = parse_json(*data);
    CHECK(json_str(row, "/log_id") == id);
    CHECK(json_raw(row, "/status") == "200");
    CHECK(json_raw(row, "/test") == "true");
    CHECK(json_str(row, "/deliveries/0/handler") == "files");
    CHECK(json_str(row, "/deliveries/0/state") == "pending");

    // A duplicate is no new event: the stream does not show it again.
    console.post_event_ok(event_body(id));
    const std::string other = new_log_id();
    console.post_event_ok(event_body(other));
    REQUIRE(stream.wait_for("event", other, 2s).has_value());
    // Counted among the `event` messages only (the deliveries' transitions name it too).
    const std::string& all = stream.received();
    const std::string message = "event: event\ndata: {\"key\":\"" + id + "\"";
    std::size_t times = 0;
    for (auto at = all.find(message); at != std::string::npos; at = all.find(message, at + 1)) {
      ++times;
    }
    CHECK(times == 1);
  }
}

TEST_CASE("admin stream: the hostile twin: no token no stream") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    EventStream stream(console.admin_port(), "");
    CHECK(stream.status_line() == "HTTP/1.1 401 Unauthorized");
    const std::string id = new_log_id();
    console.post_event_ok(event_body(id));
    CHECK_FALSE(stream.wait_for("event", id, 500ms).has_value());
    // A POST to the stream is not one.
    CHECK(console.post("/api/stream").status == 405);
  }
}

TEST_CASE("admin stream: a quarantined payload is announced with its errors") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    ConsoleOptions options;
    options.invalid_payloads = "quarantine";
    Console console(backend, options);
    EventStream stream(console.admin_port());
    REQUIRE(stream.status_line() == "HTTP/1.1 200 OK");
    const HttpResponse response =
        http(console.server().port(), post_event(fixture("invalid-several-errors.json")));
    REQUIRE(response.status == 200);
    const auto data = stream.wait_for("quarantine", "errors", 2s);
    REQUIRE_MESSAGE(data.has_value(), stream.received());
    const auto item = parse_json(*data);
    CHECK(item["errors"].IsArray());
    CHECK(item["errors"].Size() >= 2);
    CHECK(item.HasMember("received_at"));
    CHECK(item.HasMember("request_id"));
    CHECK(item.HasMember("bytes"));
  }
}

TEST_CASE("admin stream: a delivery's transitions reach the stream") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir out;
    ConsoleOptions options;
    options.handlers = file_handler(out);
    Console console(backend, options);
    if (skip_without_console(console)) return;
    EventStream stream(console.admin_port());
    REQUIRE(stream.status_line() == "HTTP/1.1 200 OK");
    const std::string id = new_log_id();
    console.post_event_ok(event_body(id));
    const auto done = stream.wait_for("delivery", R"("state":"done")", 10s);
    REQUIRE_MESSAGE(done.has_value(), stream.received());
    const auto item = parse_json(*done);
    CHECK(json_str(item, "/log_id") == id);
    CHECK(json_str(item, "/handler") == "files");
  }
}

TEST_CASE("admin stream: an idle stream hears a keep-alive comment every 15 s") {
  const auto backend = backends().front();
  Console console(backend);
  EventStream stream(console.admin_port());
  REQUIRE(stream.status_line() == "HTTP/1.1 200 OK");
  const auto opened = std::chrono::steady_clock::now();
  REQUIRE(stream.wait_for_text(": keep-alive\n\n", 20s));
  CHECK(ms_since(opened) >= 14'000);
}

TEST_CASE("admin stream: a hundred open streams add under 16 MiB resident and all hear an event") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    {
      // Warm up: the first stream's allocations (the hub, the coroutine pools) are not the
      // streams' cost.
      EventStream first(console.admin_port());
      REQUIRE(first.status_line() == "HTTP/1.1 200 OK");
      console.post_event_ok(event_body(new_log_id()));
    }
    const long before = resident_kib(console.server().pid());
    std::vector<std::unique_ptr<EventStream>> streams;
    for (int i = 0; i < 100; ++i) {
      streams.push_back(std::make_unique<EventStream>(console.admin_port()));
    }
    for (auto& s : streams)
      REQUIRE(s->status_line() == "HTTP/1.1 200 OK");
    const std::string id = new_log_id();
    console.post_event_ok(event_body(id));
    for (auto& s : streams)
      REQUIRE(s->wait_for("event", id, 5s).has_value());
    const long after = resident_kib(console.server().pid());
    INFO("resident before " << before << " KiB, with 100 streams " << after << " KiB");
    CHECK(after - before < 16 * 1024);
    MESSAGE("100 streams: +" << (after - before) << " KiB resident");
  }
}

}  // namespace
}  // namespace fbr::itest::admin
