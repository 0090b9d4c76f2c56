// What the NATS dispatcher records of the attempts it ran (nats/history.hpp): bounds, states, the
// live `delivery` item's JSON, and the ISO 8601 times the console filters on.
#include "server/journal/nats/history.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <string>

using namespace fbr::server;

TEST_CASE("nats history: an attempt runs, then ends with its outcome, duration and error") {
  NatsHistory h;
  CHECK_FALSE(h.of("k", "files").has_value());
  h.started("k", "log", "files", 1);
  CHECK(h.running() == 1);
  auto d = h.of("k", "files");
  REQUIRE(d.has_value());
  CHECK(d->running);
  CHECK(d->attempts == 1);
  CHECK(d->history.empty());
  h.finished("k", "log", "files", 1, 42, "retry", "exit status 1", 123456);
  CHECK(h.running() == 0);
  d = h.of("k", "files");
  CHECK_FALSE(d->running);
  CHECK(d->last_outcome == "retry");
  CHECK(d->last_error == "exit status 1");
  CHECK(d->next_attempt_at_ms == 123456);
  REQUIRE(d->history.size() == 1);
  CHECK(d->history[0].attempt == 1);
  CHECK(d->history[0].duration_ms == 42);
  CHECK(d->history[0].outcome == "retry");
  CHECK(d->history[0].started_at.size() == 24);
  h.started("k", "log", "files", 2);
  h.finished("k", "log", "files", 2, 5, "done", "");
  d = h.of("k", "files");
  CHECK(d->last_outcome == "done");
  CHECK(d->next_attempt_at_ms == 0);
  CHECK(d->attempts == 2);
  CHECK_FALSE(h.of("k", "other").has_value());
}

TEST_CASE("nats history: a delivery keeps its last 20 attempts, the record its last 1024 events") {
  NatsHistory h;
  for (int i = 1; i <= 25; ++i) {
    h.started("k", "", "files", i);
    h.finished("k", "", "files", i, 1, "retry", "e" + std::to_string(i), 0);
  }
  const auto d = h.of("k", "files");
  REQUIRE(d->history.size() == NatsHistory::kMaxAttempts);
  CHECK(d->history.front().attempt == 6);
  CHECK(d->history.back().attempt == 25);

  h.started("running", "", "files", 1);  // the oldest after "k", still running
  for (std::size_t i = 0; i < NatsHistory::kMaxEvents; ++i)
    h.gave_up("e" + std::to_string(i), "", "files", 3, "gave up");
  CHECK_FALSE(h.of("k", "files").has_value());
  CHECK_FALSE(h.of("running", "files").has_value());
  CHECK(h.running() == 0);  // a forgotten running delivery is not counted for ever
  const auto newest = h.of("e1023", "files");
  REQUIRE(newest.has_value());
  CHECK(newest->last_outcome == "dead");
  CHECK(newest->attempts == 3);
  CHECK(newest->history.empty());  // it ran nothing here
}

TEST_CASE(
    "nats history: the delivery item has exactly key, log_id, handler, state, attempts, error") {
  const std::string json = delivery_json("k\"1", "log", "files", "failed", 3, "line\nbreak");
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(doc.MemberCount() == 6);
  CHECK(std::string(doc["key"].GetString()) == "k\"1");
  CHECK(std::string(doc["log_id"].GetString()) == "log");
  CHECK(std::string(doc["handler"].GetString()) == "files");
  CHECK(std::string(doc["state"].GetString()) == "failed");
  CHECK(doc["attempts"].GetInt() == 3);
  CHECK(std::string(doc["error"].GetString()) == "line\nbreak");
  CHECK(json.find('\n') == std::string::npos);  // one SSE data line
}

TEST_CASE("nats history: ISO 8601 UTC times to milliseconds and back") {
  CHECK(unix_ms_from_iso("1970-01-01") == 0);
  CHECK(unix_ms_from_iso("1970-01-01T00:00:01Z") == 1000);
  CHECK(unix_ms_from_iso("2026-12-02T20:14:03.512Z") == 1796242443512);
  CHECK(unix_ms_from_iso("2026-12-02T20:14:03.5Z") == 1796242443500);
  CHECK(unix_ms_from_iso("2026-12-02T20:14:03.51234Z") == 1796242443512);
  CHECK(unix_ms_from_iso("2026-12-02T21:14:03.512+01:00") == 1796242443512);
  CHECK(unix_ms_from_iso("2026-12-02T19:14:03.512-01:00") == 1796242443512);
  CHECK(unix_ms_from_iso("2026-12-02T20:14") == 1796242440000);
  CHECK(iso_from_unix_ms(1796242443512) == "2026-12-02T20:14:03.512Z");
  CHECK(iso_from_unix_ms(0) == "1970-01-01T00:00:00.000Z");
}

TEST_CASE("nats history: what is not an ISO 8601 time is refused") {
  for (const char* bad :
       {"", "2026", "2026-12", "2026-12-02T", "2026-12-02T20", "2026-02-30", "2026-13-01",
        "2026-12-02T24:00", "2026-12-02T20:60", "2026-12-02T20:14:03.", "2026-12-02T20:14:03Zjunk",
        "2026-12-02T20:14:03+0100", "yesterday", "+026-12-02", "2026-12-02T20:14:03 Z"}) {
    INFO(bad);
    CHECK_FALSE(unix_ms_from_iso(bad).has_value());
  }
}
