// A 200 means durable: events acknowledged before a kill -9 are all in the journal after a restart.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

TEST_CASE("durability: every event answered 200 survives kill -9 of the server") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  constexpr int kSenders = 8;
  constexpr std::size_t kEnoughAcks = 4000;
  std::mutex mutex;
  std::vector<std::string> acknowledged;
  std::vector<std::string> unexpected;  // any answer but 200 for a fresh, valid event
  std::vector<std::string> failures;    // a sender that failed before the kill
  std::atomic<std::size_t> acks{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> killed{false};
  bool mid_stream = false;  // a 200 came just before the kill
  const unsigned short port = server.port();
  {
    std::vector<std::jthread> senders;
    for (int t = 0; t < kSenders; ++t) {
      senders.emplace_back([&] {
        try {
          HttpConnection connection(port);
          while (!stop) {
            const std::string id = new_log_id();
            const auto r = connection.send(post_event(event_with_log_id(id)), 15s);
            const std::lock_guard lock(mutex);
            if (r.status == 200 && json_str(parse_json(r.body), "/logId") == id) {
              acknowledged.push_back(id);
              ++acks;
            } else {
              unexpected.push_back(std::to_string(r.status) + " " + r.body);
            }
          }
        } catch (const std::exception& e) {
          // After the kill: the server died under this connection, the request in flight got
          // no 200. Before it, a failure is a failure.
          if (!killed) {
            const std::lock_guard lock(mutex);
            failures.emplace_back(e.what());
          }
        }
      });
    }
    // Load until plenty are acknowledged (at most 6 s), then pull the plug mid-stream.
    const auto until = std::chrono::steady_clock::now() + 6000ms;
    while (std::chrono::steady_clock::now() < until && acks < kEnoughAcks) {
      std::this_thread::sleep_for(5ms);
    }
    // Kill right after a fresh 200, so that it lands among commits in flight.
    const std::size_t seen = acks;
    const auto fresh_until = std::chrono::steady_clock::now() + 2s;
    while (acks == seen && std::chrono::steady_clock::now() < fresh_until) {
      std::this_thread::yield();
    }
    mid_stream = acks > seen;
    killed = true;
    server.kill9();
    stop = true;
  }  // the senders see their connections die and finish

  CHECK_MESSAGE(unexpected.empty(), unexpected.size(),
                " unexpected answers, first: ", unexpected.empty() ? "" : unexpected.front());
  CHECK_MESSAGE(failures.empty(), failures.size(), " senders failed before the kill, first: ",
                failures.empty() ? "" : failures.front());
  // The kill must land among many commits while 200s were still coming, not after a handful.
  CHECK_MESSAGE(mid_stream, "no 200 in the 2 s before the kill: the load had stopped");
  REQUIRE_MESSAGE(acknowledged.size() >= 200, "only ", acknowledged.size(),
                  " events acknowledged before the kill: the test proves little");

  server.start();  // same config, same data dir

  {
    const Journal journal(server.journal_path());
    std::map<std::string, std::string> bodies;
    for (auto& row : journal.query("SELECT log_id, body FROM events")) {
      bodies[row.at(0).value_or("")] = row.at(1).value_or("");
    }
    std::set<std::string> receipts;
    for (auto& row : journal.query("SELECT event_key FROM event_attempts")) {
      receipts.insert(row.at(0).value_or(""));
    }
    std::vector<std::string> lost;
    std::size_t altered = 0;
    std::size_t without_receipt = 0;
    for (const auto& id : acknowledged) {
      const auto it = bodies.find(id);
      if (it == bodies.end()) {
        lost.push_back(id);
        continue;
      }
      if (it->second != event_with_log_id(id)) ++altered;
      if (receipts.count(id) == 0) ++without_receipt;
    }
    CHECK_MESSAGE(lost.empty(), lost.size(), " of ", acknowledged.size(),
                  " acknowledged events are missing after kill -9, e.g. ",
                  lost.empty() ? "" : lost.front());
    CHECK(altered == 0);
    CHECK(without_receipt == 0);
  }

  // The CLI reads the same journal and agrees.
  const auto cli = run_cli(
      {"events", "--config", server.config_path().string(), "--json", "--limit", "1000000"});
  REQUIRE_MESSAGE(cli.exit_code == 0, cli.output().substr(0, 2000));
  const auto listed = parse_json(cli.out);
  REQUIRE_MESSAGE(!listed.HasParseError(), "events --json is not JSON: ", cli.out.substr(0, 500));
  REQUIRE(listed.IsArray());
  std::set<std::string> listed_ids;
  for (const auto& event : listed.GetArray()) {
    REQUIRE(event.IsObject());
    listed_ids.insert(json_str(event, "/logId"));
  }
  std::size_t missing_from_cli = 0;
  for (const auto& id : acknowledged)
    missing_from_cli += listed_ids.count(id) == 0 ? 1 : 0;
  CHECK_MESSAGE(missing_from_cli == 0, missing_from_cli, " acknowledged events not listed by ",
                "`events --json`");

  // And the restarted server knows them: a retry of one is a duplicate.
  const auto retry = http(server.port(), post_event(event_with_log_id(acknowledged.front())));
  CHECK(retry.status == 200);
  CHECK(json_raw(parse_json(retry.body), "/duplicate") == "true");
}

TEST_CASE("shutdown: SIGTERM exits 0 and the journal keeps what was acknowledged") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  const std::string id = new_log_id();
  REQUIRE(http(server.port(), post_event(event_with_log_id(id))).status == 200);

  CHECK(server.terminate() == 0);
  CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);

  server.start();
  const auto again = http(server.port(), post_event(event_with_log_id(id)));
  CHECK(again.status == 200);
  CHECK(json_raw(parse_json(again.body), "/duplicate") == "true");
}
