// The live hub behind /api/stream and the status bar: a subscriber hears what is published after
// it subscribed, a slow one loses the oldest and is told, nobody listening costs nothing, the
// per-minute counts roll over, and download progress is throttled and bounded.
#include "server/support/activity.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace fbr::server {
namespace {

Activity::FileProgress file(std::string url, std::uint64_t bytes) {
  Activity::FileProgress f;
  f.handler = "download";
  f.url = std::move(url);
  f.bytes = bytes;
  return f;
}

TEST_CASE("activity: a subscriber hears what is published, in order, and is woken once a batch") {
  Activity hub;
  auto sub = hub.subscribe();
  int wakes = 0;
  sub->on_ready([&] { ++wakes; });
  hub.publish("event", R"({"key":"a"})");
  hub.publish("delivery", R"({"key":"a","state":"done"})");
  CHECK(wakes == 1);  // the second item found the queue non-empty
  bool lost = true;
  const auto items = sub->take(lost);
  CHECK_FALSE(lost);
  REQUIRE(items.size() == 2);
  CHECK(items[0].type == "event");
  CHECK(items[0].json == R"({"key":"a"})");
  CHECK(items[1].type == "delivery");
  hub.publish("event", "{}");
  CHECK(wakes == 2);  // empty again after take: the next item wakes the reader
}

TEST_CASE("activity: a subscriber does not hear what came before it, and two hear the same") {
  Activity hub;
  auto first = hub.subscribe();
  hub.publish("event", "1");
  auto second = hub.subscribe();
  hub.publish("event", "2");
  bool lost = false;
  CHECK(first->take(lost).size() == 2);
  const auto items = second->take(lost);
  REQUIRE(items.size() == 1);
  CHECK(items[0].json == "2");
}

TEST_CASE("activity: items queued before on_ready wake the reader when it registers") {
  Activity hub;
  auto sub = hub.subscribe();
  hub.publish("event", "{}");
  int wakes = 0;
  sub->on_ready([&] { ++wakes; });
  CHECK(wakes == 1);
}

TEST_CASE("activity: an overflowing queue drops the oldest and says lost, once") {
  Activity hub;
  auto sub = hub.subscribe(3);
  for (int i = 0; i < 5; ++i)
    hub.publish("event", std::to_string(i));
  bool lost = false;
  const auto items = sub->take(lost);
  CHECK(lost);
  REQUIRE(items.size() == 3);
  CHECK(items.front().json == "2");
  CHECK(items.back().json == "4");
  hub.publish("event", "5");
  CHECK(sub->take(lost).size() == 1);
  CHECK_FALSE(lost);
}

TEST_CASE("activity: the hostile twin: a reader that never reads holds at most its bound") {
  Activity hub;
  auto sub = hub.subscribe(1024);
  for (int i = 0; i < 100'000; ++i)
    hub.publish("event", "x");
  bool lost = false;
  CHECK(sub->take(lost).size() == 1024);
  CHECK(lost);
}

TEST_CASE("activity: listening() follows the subscriptions' lifetimes") {
  Activity hub;
  CHECK_FALSE(hub.listening());
  hub.publish("event", "{}");  // nobody: a no-op
  auto a = hub.subscribe();
  auto b = hub.subscribe();
  CHECK(hub.listening());
  a.reset();
  CHECK(hub.listening());
  b.reset();
  CHECK_FALSE(hub.listening());
  hub.publish("event", "{}");  // the expired ones are skipped
}

TEST_CASE("activity: publishers on many threads and a reader: nothing beyond the bound, no crash") {
  Activity hub;
  auto sub = hub.subscribe(64);
  std::atomic<int> wakes{0};
  sub->on_ready([&] { wakes.fetch_add(1); });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i)
        hub.publish("event", "{}");
    });
  }
  std::size_t seen = 0;
  bool lost = false;
  for (int i = 0; i < 200; ++i)
    seen += sub->take(lost).size();
  for (auto& t : threads)
    t.join();
  seen += sub->take(lost).size();
  CHECK(seen <= 8000);
  CHECK(wakes.load() >= 1);
}

TEST_CASE("activity: events per minute over the last hour, oldest first, old minutes forgotten") {
  Activity hub;
  const std::int64_t t0 = 1'800'000'000'000;  // some minute boundary's neighbourhood
  const std::int64_t minute = 60'000;
  hub.count_event(t0);
  hub.count_event(t0 + 1);
  hub.count_event(t0 + minute);
  auto counts = hub.events_per_minute(t0 + minute);
  CHECK(counts[59] == 1);
  CHECK(counts[58] == 2);
  CHECK(counts[57] == 0);
  // An hour later the same slots are new minutes: the old counts do not show.
  counts = hub.events_per_minute(t0 + 61 * minute);
  for (auto c : counts)
    CHECK(c == 0);
  hub.count_event(t0 + 60 * minute);  // t0's slot, a new minute: restarts at 1
  counts = hub.events_per_minute(t0 + 60 * minute);
  CHECK(counts[59] == 1);  // t0's 2 do not carry over into its slot's new minute
  CHECK(counts[0] == 1);   // t0 + minute: the oldest minute still within the hour
}

TEST_CASE("activity: progress is recorded per file and published at most 4 a second") {
  Activity hub;
  auto sub = hub.subscribe();
  bool lost = false;
  hub.progress("k", file("https://x/1", 10), 1000);  // first sight: published
  hub.progress("k", file("https://x/1", 20), 1100);  // within 250 ms: recorded, not published
  hub.progress("k", file("https://x/2", 5), 1150);   // another file: its own throttle
  hub.progress("k", file("https://x/1", 30), 1250);  // 250 ms after the last publish
  auto items = sub->take(lost);
  REQUIRE(items.size() == 3);
  CHECK(items[0].type == "progress");
  CHECK(items[0].json.find(R"("key":"k")") != std::string::npos);
  CHECK(items[0].json.find(R"("bytes":10)") != std::string::npos);
  CHECK(items[1].json.find(R"("url":"https://x/2")") != std::string::npos);
  CHECK(items[2].json.find(R"("bytes":30)") != std::string::npos);
  const auto files = hub.progress_of("k");
  REQUIRE(files.size() == 2);
  CHECK(files[0].bytes == 30);
  CHECK(files[1].url == "https://x/2");
  CHECK(hub.progress_of("other").empty());
}

TEST_CASE("activity: a verified or failed file is published even inside the throttle") {
  Activity hub;
  auto sub = hub.subscribe();
  bool lost = false;
  hub.progress("k", file("u", 1), 1000);
  auto done = file("u", 2);
  done.verified = true;
  done.sha256 = "ab";
  hub.progress("k", done, 1001);
  auto failed = file("v", 0);
  hub.progress("k", failed, 1002);
  failed.error = "GET u: 404";
  hub.progress("k", failed, 1003);
  const auto items = sub->take(lost);
  REQUIRE(items.size() == 4);
  CHECK(items[1].json.find(R"("verified":true)") != std::string::npos);
  CHECK(items[3].json.find(R"("error":"GET u: 404")") != std::string::npos);
}

TEST_CASE("activity: progress remembers the files of the last 256 events only") {
  Activity hub;
  for (int i = 0; i < 300; ++i)
    hub.progress("e" + std::to_string(i), file("u", 1), i);
  CHECK(hub.progress_of("e0").empty());
  CHECK(hub.progress_of("e43").empty());
  CHECK(hub.progress_of("e44").size() == 1);
  CHECK(hub.progress_of("e299").size() == 1);
}

TEST_CASE("activity: progress without a subscriber is still recorded") {
  Activity hub;
  hub.progress("k", file("u", 7), 0);
  REQUIRE(hub.progress_of("k").size() == 1);
  CHECK(hub.progress_of("k")[0].bytes == 7);
}

}  // namespace
}  // namespace fbr::server
