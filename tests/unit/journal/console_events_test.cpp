// The console's events list on the SQLite journal: filters, keyset pages, hostile inputs.
#include <doctest/doctest.h>

#include <concepts>
#include <set>

#include "server/journal/sqlite/console.hpp"
#include "tests/unit/journal/console_support.hpp"

using namespace fbr::server;
using fbr::test::commit;
using fbr::test::console_event;
using fbr::test::ConsoleDir;
using fbr::test::update;

namespace {

std::vector<std::string> keys_of(const EventPage& page) {
  std::vector<std::string> keys;
  for (const auto& e : page.events)
    keys.push_back(e.key);
  return keys;
}

/// Four events, oldest first: a (file done), b (file dead, test), c (202, archive pending),
/// d (no delivery, a duplicate with its own attempt and request IDs).
void fill(SqliteJournal& journal) {
  REQUIRE(commit(journal, console_event("a", "2026-01-01T00:00:00.000Z", {"file"})));
  auto b = console_event("b", "2026-01-02T00:00:00.000Z", {"file"});
  b.test = true;
  REQUIRE(commit(journal, b));
  auto c = console_event("c", "2026-01-03T00:00:00.000Z", {"archive"});
  c.status = 202;
  c.test = false;
  REQUIRE(commit(journal, c));
  REQUIRE(commit(journal, console_event("d", "2026-01-04T00:00:00.000Z")));
  auto again = console_event("d", "2026-01-04T00:00:01.000Z");
  again.receipt.attempt_id = "second-attempt";
  again.receipt.request_id = "second-request";
  REQUIRE(commit(journal, again));
  REQUIRE(update(journal, {{"a", "file", DeliveryState::kDone, 1, 0, ""},
                           {"b", "file", DeliveryState::kDead, 3, 0, "HTTP 404"}}));
}

/// A query with some filters set (designated initializers would leave fields "missing").
template <typename Set>
EventQuery with(Set&& set) {
  EventQuery query;
  set(query);
  return query;
}

/// A journal filled as above, and the console on it.
struct Filled {
  ConsoleDir dir;
  SqliteJournal journal;
  SqliteConsole console{dir.path};
  Filled() {
    REQUIRE_FALSE(journal.open(dir.path).has_value());
    fill(journal);
  }
};

EventPage page(SqliteConsole& console, const EventQuery& query) {
  std::string error;
  auto result = console.query_events(query, error);
  CHECK(error.empty());
  return result;
}

template <std::invocable<EventQuery&> Set>
EventPage page(SqliteConsole& console, Set&& set) {
  return page(console, with(set));
}

}  // namespace

TEST_CASE("console lists events newest first with their attempts and delivery chips") {
  Filled filled;
  auto& console = filled.console;
  auto all = page(console, EventQuery{});
  CHECK(keys_of(all) == std::vector<std::string>{"d", "c", "b", "a"});
  CHECK(all.next_cursor.empty());
  const auto& d = all.events[0];
  CHECK(d.attempts == 2);
  CHECK(d.deliveries.empty());
  CHECK_FALSE(d.test.has_value());
  const auto& b = all.events[2];
  CHECK(b.log_id == "b");
  CHECK(b.received_at == "2026-01-02T00:00:00.000Z");
  CHECK(b.status == 200);
  CHECK(b.output_count == 2);
  CHECK(b.test == std::optional<bool>(true));
  REQUIRE(b.deliveries.size() == 1);
  CHECK(b.deliveries[0].handler == "file");
  CHECK(b.deliveries[0].state == "dead");
  CHECK(b.deliveries[0].attempts == 3);
}

TEST_CASE("console filters events by state status test handler and time") {
  Filled filled;
  auto& console = filled.console;
  using V = std::vector<std::string>;
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.state = "dead"; })) == V{"b"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.state = "pending"; })) == V{"c"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.state = "done"; })) == V{"a"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.state = "running"; })).empty());
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.status = 202; })) == V{"c"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.status = 200; })) == V{"d", "b", "a"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.test = true; })) == V{"b"});
  // No Meta.Test counts as false, as in `when`.
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.test = false; })) == V{"d", "c", "a"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.handler = "file"; })) == V{"b", "a"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.handler = "nope"; })).empty());
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.since = "2026-01-02T00:00:00Z"; })) ==
        V{"d", "c", "b"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.until = "2026-01-02T00:00:00Z"; })) ==
        V{"a"});  // exclusive
  CHECK(keys_of(page(console, [&](EventQuery& e) {
          e.since = "2026-01-02";
          e.until = "2026-01-03T00:00:00.000Z";
        })) == V{"b"});
  CHECK(keys_of(page(console, [&](EventQuery& e) {
          e.state = "done";
          e.status = 200;
          e.handler = "file";
        })) == V{"a"});
  CHECK(keys_of(page(console, [&](EventQuery& e) {
          e.state = "dead";
          e.test = false;
        })).empty());
}

TEST_CASE("console search finds an event by Log ID key attempt ID or request ID exactly") {
  Filled filled;
  auto& journal = filled.journal;
  auto& console = filled.console;
  // An event with a Log ID has it as its key; one without has sha256:... (core::event_key).
  auto no_log = console_event("sha256:e0", "2026-01-05T00:00:00.000Z");
  no_log.log_id = "";
  REQUIRE(commit(journal, no_log));
  using V = std::vector<std::string>;
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = "sha256:e0"; })) == V{"sha256:e0"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = "a"; })) == V{"a"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = "req-sha256:e0"; })) == V{"sha256:e0"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = "attempt-b"; })) == V{"b"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = "req-c"; })) == V{"c"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = "second-attempt"; })) == V{"d"});
  CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = "second-request"; })) == V{"d"});
  CHECK(keys_of(page(console, [&](EventQuery& e) {
          e.q = "attempt-";
        })).empty());  // exact, not a prefix
  CHECK(keys_of(page(console, [&](EventQuery& e) {
          e.state = "dead";
          e.q = "attempt-b";
        })) == V{"b"});
  CHECK(keys_of(page(console, [&](EventQuery& e) {
          e.state = "done";
          e.q = "attempt-b";
        })).empty());
}

TEST_CASE("console search with SQL metacharacters matches nothing and harms nothing") {
  Filled filled;
  auto& console = filled.console;
  for (std::string q : {"' OR '1'='1", "a' --", "%", "_", "\"; DROP TABLE events; --", "a\\0b"}) {
    CHECK(keys_of(page(console, [&](EventQuery& e) { e.q = q; })).empty());
    CHECK(keys_of(page(console, [&](EventQuery& e) { e.handler = q; })).empty());
  }
  CHECK(page(console, EventQuery{}).events.size() == 4);
}

TEST_CASE("console pages by keyset without skipping or repeating while events arrive") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  for (int i = 0; i < 25; ++i) {
    REQUIRE(commit(journal, console_event("old-" + std::to_string(i), "2026-01-01T00:00:00.000Z")));
  }
  SqliteConsole console(dir.path);
  std::vector<std::string> seen;
  EventQuery query;
  query.limit = 10;
  for (int round = 0;; ++round) {
    auto result = page(console, query);
    CHECK(result.events.size() <= 10);
    for (const auto& key : keys_of(result))
      seen.push_back(key);
    // Newer events land meanwhile (one at an older received_at too): no page shifts.
    REQUIRE(
        commit(journal, console_event("new-" + std::to_string(round), "2025-01-01T00:00:00.000Z")));
    if (result.next_cursor.empty()) break;
    query.cursor = result.next_cursor;
  }
  REQUIRE(seen.size() == 25);
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 25);
  CHECK(seen.front() == "old-24");
  CHECK(seen.back() == "old-0");
  // A page that ends exactly at the oldest event says there is no more.
  auto exact = page(console, [&](EventQuery& e) {
    e.q = "old-0";
    e.limit = 1;
  });
  CHECK(exact.events.size() == 1);
  CHECK(exact.next_cursor.empty());
}

TEST_CASE("console refuses a malformed cursor a bad state and a bad time naming each") {
  Filled filled;
  auto& console = filled.console;
  const std::string long_cursor(100, 'M');
  for (std::string cursor :
       {"x", "!!", "MTIzNDU=", "LTE", "MA", "MDE", "YWJj", "' OR 1=1 --", long_cursor.c_str()}) {
    std::string error;
    auto result = console.query_events(with([&](EventQuery& e) { e.cursor = cursor; }), error);
    CHECK(error.rfind("cursor: ", 0) == 0);
    CHECK(result.events.empty());
  }
  std::string error;
  console.query_events(with([&](EventQuery& e) { e.state = "deadish"; }), error);
  CHECK(error == "state: must be one of pending, running, done, failed, dead");
  for (std::string bad : {"yesterday", "2026-13-01", "2026-01-01T25:00", "2026-01-01T00:00+01:00",
                          "2026-01-01 00:00:00", "2026-01-01T00:00:00.Z"}) {
    error.clear();
    console.query_events(with([&](EventQuery& e) { e.since = bad; }), error);
    CHECK(error.rfind("since: ", 0) == 0);
    error.clear();
    console.query_events(with([&](EventQuery& e) { e.until = bad; }), error);
    CHECK(error.rfind("until: ", 0) == 0);
  }
  // The console still answers after the refusals.
  CHECK(page(console, EventQuery{}).events.size() == 4);
}

TEST_CASE("console clamps the page size to 1 to 500") {
  ConsoleDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  for (int i = 0; i < 502; ++i) {
    journal.commit(console_event("k" + std::to_string(i), "2026-01-01T00:00:00.000Z"),
                   [](CommitResult) {});
  }
  REQUIRE(commit(journal, console_event("last", "2026-01-01T00:00:00.000Z")));
  SqliteConsole console(dir.path);
  auto huge = page(console, [&](EventQuery& e) { e.limit = 1'000'000'000; });
  CHECK(huge.events.size() == 500);
  CHECK_FALSE(huge.next_cursor.empty());
  auto none = page(console, [&](EventQuery& e) { e.limit = -5; });
  CHECK(none.events.size() == 1);
  CHECK(keys_of(none) == std::vector<std::string>{"last"});
}

TEST_CASE("cursor round-trips row ids and times normalise to the journal form") {
  std::string error;
  CHECK(encode_cursor(12345) == "MTIzNDU");
  CHECK(decode_cursor("MTIzNDU", error) == std::optional<std::int64_t>(12345));
  CHECK(error.empty());
  CHECK(normalized_utc("2026-12-02") == std::optional<std::string>("2026-12-02T00:00:00.000Z"));
  CHECK(normalized_utc("2026-12-02T20:14") ==
        std::optional<std::string>("2026-12-02T20:14:00.000Z"));
  CHECK(normalized_utc("2026-12-02T20:14:03Z") ==
        std::optional<std::string>("2026-12-02T20:14:03.000Z"));
  CHECK(normalized_utc("2026-12-02T20:14:03.5Z") ==
        std::optional<std::string>("2026-12-02T20:14:03.500Z"));
  CHECK(normalized_utc("2026-12-02T20:14:03.123456Z") ==
        std::optional<std::string>("2026-12-02T20:14:03.123Z"));
  CHECK_FALSE(normalized_utc("").has_value());
  CHECK_FALSE(normalized_utc("2026-12-02TZ").has_value());
  CHECK_FALSE(normalized_utc("2026-12-02T20:14:03ZZ").has_value());
}
