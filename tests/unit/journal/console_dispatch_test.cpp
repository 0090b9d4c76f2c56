// The SQLite dispatcher keeps each attempt in the delivery's history, and the console's bulk
// replay sends dead deliveries through it again.
#include <doctest/doctest.h>
#include <spdlog/sinks/null_sink.h>

#include <chrono>
#include <functional>
#include <thread>

#include "server/journal/sqlite/backend.hpp"
#include "server/journal/sqlite/console.hpp"
#include "server/support/activity.hpp"
#include "tests/unit/config/support.hpp"
#include "tests/unit/journal/console_support.hpp"

using namespace fbr::server;
using fbr::test::console_event;
using fbr::test::ConsoleDir;

namespace {

/// Polls `condition` until it holds or 10 s have passed.
bool eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

/// The delivery's history as the console shows it (empty while the event is unknown).
std::vector<DeliveryAttempt> history(Backend& backend, const std::string& key) {
  std::string error;
  auto detail = backend.event_detail(key, error);
  if (!detail || detail->deliveries.empty()) return {};
  return detail->deliveries[0].history;
}

}  // namespace

TEST_CASE("the sqlite dispatcher records every attempt and a bulk replay runs dead ones again") {
  ConsoleDir dir;
  const auto config = fbr::config::test::parse_ok(R"({"data_dir": ")" + dir.path.string() +
                                                  R"(", "handlers": [{"name": "fails",
      "type": "exec", "command": ["/bin/false"],
      "retry": {"max_attempts": 2, "initial_backoff_ms": 1, "max_backoff_ms": 1}}]})");
  const Logger log{fbr::config::Log{"off", fbr::config::LogFormat::kText},
                   std::make_shared<spdlog::sinks::null_sink_mt>()};
  Metrics metrics;
  auto stream = activity().subscribe();
  auto backend = make_sqlite_backend(config);
  REQUIRE_FALSE(backend->open(log).has_value());
  auto dispatcher = backend->make_dispatcher(metrics, log);
  REQUIRE_FALSE(dispatcher->start().has_value());
  REQUIRE(fbr::test::journal_sync([&](Journal::Callback done) {
            backend->journal().commit(console_event("k", "2026-01-01T00:00:00.000Z", {"fails"}),
                                      std::move(done));
          }).ok);

  REQUIRE(eventually([&] { return history(*backend, "k").size() == 2; }));
  auto first = history(*backend, "k");
  CHECK(first[0].attempt == 1);
  CHECK(first[0].outcome == "retry");
  CHECK(first[0].error.rfind("exit status 1", 0) == 0);
  CHECK(first[0].duration_ms >= 0);
  CHECK(fbr::server::normalized_utc(first[0].started_at) ==
        std::optional<std::string>(first[0].started_at));
  CHECK(first[1].attempt == 2);
  CHECK(first[1].outcome == "dead");
  CHECK(first[1].error.find("gave up after 2 attempts") != std::string::npos);

  // Each transition went to the live hub: running, failed (a retry), running, dead.
  std::vector<std::string> transitions;
  REQUIRE(eventually([&] {
    bool lost = false;
    for (auto& item : stream->take(lost)) {
      if (item.type == "delivery") transitions.push_back(item.json);
    }
    return transitions.size() >= 4;
  }));
  CHECK(transitions[0] ==
        R"({"key":"k","log_id":"k","handler":"fails","state":"running","attempts":1,"error":""})");
  CHECK(transitions[1].rfind(
            R"({"key":"k","log_id":"k","handler":"fails","state":"failed","attempts":1,)"
            R"("error":"exit status 1)",
            0) == 0);
  CHECK(transitions[2].find(R"("state":"running","attempts":2,)") != std::string::npos);
  CHECK(transitions[3].find(R"("state":"dead","attempts":2,"error":"gave up after 2 attempts)") !=
        std::string::npos);

  std::string error;
  const auto replayed = std::chrono::steady_clock::now();
  CHECK(backend->replay_state("dead", error) == 1);
  CHECK(error.empty());
  // The replay wakes the dispatcher: the rerun starts now, not at its next poll (500 ms after
  // its last look, which was when the delivery died, just before the replay).
  REQUIRE(eventually([&] { return history(*backend, "k").size() >= 3; }));
  CHECK(std::chrono::steady_clock::now() - replayed < std::chrono::milliseconds(300));
  // The rerun starts over at attempt 1; its history follows the first run's.
  REQUIRE(eventually([&] { return history(*backend, "k").size() == 4; }));
  auto again = history(*backend, "k");
  CHECK(again[2].attempt == 1);
  CHECK(again[3].outcome == "dead");
  dispatcher->stop();
  dispatcher.reset();
  // With the dispatcher gone a replay still works (nothing to wake).
  CHECK(backend->replay_state("dead", error) == 1);
  CHECK(error.empty());
  backend->journal().stop();
}
