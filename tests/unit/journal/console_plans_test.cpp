// The console's events query reads a big journal by different plans (a scan bounded to a time
// range, an index range, a rare state's rows): every plan must give exactly what the filters say,
// in insertion order, page after page.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <functional>

#include "server/journal/sqlite/console.hpp"
#include "tests/unit/journal/console_support.hpp"

using namespace fbr::server;
using fbr::test::commit;
using fbr::test::console_event;
using fbr::test::ConsoleDir;
using fbr::test::update;

namespace {

// More than the console's narrow-range threshold (10,000) on each side of the ranges below.
constexpr int kEvents = 32000;

std::string at(int second) {
  char text[32];
  std::snprintf(text, sizeof text, "2026-01-%02dT%02d:%02d:%02d.000Z", 1 + second / 86400,
                second / 3600 % 24, second / 60 % 60, second % 60);
  return text;
}

/// Event i arrives at second i, except every 1000th, whose clock was 5 s behind (received_at is
/// not quite in insertion order). i % 7 == 0: status 202; i % 11 == 0: a test event.
int second_of(int i) {
  return i % 1000 == 999 ? i - 5 : i;
}

struct Big {
  ConsoleDir dir;
  SqliteJournal journal;
  std::atomic<int> failed{0};
  Big() {
    REQUIRE_FALSE(journal.open(dir.path).has_value());
    for (int i = 0; i < kEvents; ++i) {
      auto r = console_event("e" + std::to_string(i), at(second_of(i)), {"h"});
      r.status = i % 7 == 0 ? 202 : 200;
      if (i % 11 == 0) r.test = true;
      journal.commit(std::move(r), [this](CommitResult result) { failed += result.ok ? 0 : 1; });
    }
    REQUIRE(commit(journal, console_event("last", at(kEvents))));  // after all the others
    REQUIRE(failed.load() == 0);
    std::vector<DeliveryUpdate> dead;
    for (int i = 0; i < kEvents; i += 997)
      dead.push_back({"e" + std::to_string(i), "h", DeliveryState::kDead, 1, 0, "no"});
    REQUIRE(update(journal, std::move(dead)));
  }
};

/// Every page of `query` (500 at a time), concatenated.
std::vector<std::string> all_pages(SqliteConsole& console, EventQuery query) {
  std::vector<std::string> keys;
  query.limit = 500;
  for (;;) {
    std::string error;
    auto page = console.query_events(query, error);
    REQUIRE(error.empty());
    for (const auto& e : page.events)
      keys.push_back(e.key);
    if (page.next_cursor.empty()) return keys;
    query.cursor = page.next_cursor;
  }
}

/// The events `match` keeps, newest first.
std::vector<std::string> expected(const std::function<bool(int)>& match) {
  std::vector<std::string> keys;
  for (int i = kEvents - 1; i >= 0; --i) {
    if (match(i)) keys.push_back("e" + std::to_string(i));
  }
  return keys;
}

}  // namespace

TEST_CASE("console plans over a big journal give exactly what the filters say") {
  Big big;
  SqliteConsole console(big.dir.path);
  const int lo = 10500, hi = 22000;  // a wide window with many events on both sides
  auto in_window = [&](int i) { return second_of(i) >= lo && second_of(i) < hi; };

  EventQuery window;
  window.since = at(lo);
  window.until = at(hi);
  CHECK(all_pages(console, window) == expected(in_window));

  EventQuery handled = window;  // filtered: bounded below too, its oldest row included
  handled.handler = "h";
  CHECK(all_pages(console, handled) == expected(in_window));

  EventQuery sparse = window;
  sparse.status = 202;
  sparse.test = true;
  CHECK(all_pages(console, sparse) ==
        expected([&](int i) { return in_window(i) && i % 7 == 0 && i % 11 == 0; }));

  EventQuery old;  // until far in the past: a wide range with most events newer than it
  old.until = at(12000);
  old.test = true;
  CHECK(all_pages(console, old) ==
        expected([&](int i) { return second_of(i) < 12000 && i % 11 == 0; }));

  EventQuery recent;  // a narrow range: read from the received_at index
  recent.since = at(kEvents - 300);
  auto recent_keys = all_pages(console, recent);
  CHECK(recent_keys.front() == "last");
  recent_keys.erase(recent_keys.begin());
  CHECK(recent_keys == expected([&](int i) { return second_of(i) >= kEvents - 300; }));

  EventQuery dead;  // a rare state, read from its rows
  dead.state = "dead";
  CHECK(all_pages(console, dead) == expected([](int i) { return i % 997 == 0; }));
  dead.since = at(lo);
  dead.until = at(hi);
  CHECK(all_pages(console, dead) == expected([&](int i) { return in_window(i) && i % 997 == 0; }));

  EventQuery pending;  // a common state: the scan
  pending.state = "pending";
  pending.status = 202;
  pending.since = at(lo);
  CHECK(all_pages(console, pending) ==
        expected([&](int i) { return second_of(i) >= lo && i % 7 == 0 && i % 997 != 0; }));

  EventQuery none = window;  // matches nothing in a wide range: an empty page, no error
  none.status = 201;
  CHECK(all_pages(console, none).empty());
}
