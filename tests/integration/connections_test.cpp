// HTTP/1.1 connection handling: keep-alive, pipelining, many concurrent connections.
#include <doctest/doctest.h>

#include <exception>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

TEST_CASE("connections: 100 sequential requests on one keep-alive connection") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  HttpConnection connection(server.port());
  const unsigned short local_port = connection.local_port();
  REQUIRE(local_port != 0);
  int accepted = 0;
  for (int i = 0; i < 100; ++i) {
    CAPTURE(i);
    const std::string id = new_log_id();
    const auto r = connection.send(post_event(event_with_log_id(id)));  // throws if closed
    REQUIRE(r.status == 200);
    REQUIRE(r.keep_alive);
    REQUIRE(json_str(parse_json(r.body), "/logId") == id);
    ++accepted;
  }
  CHECK(accepted == 100);
  CHECK(connection.local_port() == local_port);  // still the socket we opened

  const Journal journal(server.journal_path());
  CHECK(journal.count("events") == 100);
  CHECK(journal.count("event_attempts") == 100);
  // Server side, too, every attempt came from one peer address.
  const auto peers = journal.query("SELECT COUNT(DISTINCT remote_addr) FROM event_attempts");
  CHECK(peers.at(0).at(0).value_or("<NULL>") == "1");
}

TEST_CASE("connections: 10 pipelined requests in one write get 10 responses in order") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  std::vector<std::string> ids;
  std::string wire;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(new_log_id());
    auto request = post_event(event_with_log_id(ids.back()));
    request.headers.emplace_back("X-Request-Id", "itest-pipe-" + std::to_string(i));
    wire += serialize(request);
  }
  const auto ex = raw_exchange(server.port(), wire, 10, false, 30s);
  CHECK(ex.bytes_written == wire.size());
  REQUIRE_MESSAGE(ex.responses.size() == 10, "got ", ex.responses.size(), " responses",
                  ex.closed ? " and the server closed the connection" : "");
  for (std::size_t i = 0; i < ex.responses.size(); ++i) {
    CAPTURE(i);
    const auto& r = ex.responses[i];
    CHECK(r.status == 200);
    CHECK(json_str(parse_json(r.body), "/logId") == ids[i]);
    CHECK(r.header("X-Request-Id").value_or("<none>") == "itest-pipe-" + std::to_string(i));
  }
  CHECK(journal_count(server, "events") == 10);
}

TEST_CASE(
    "connections: 50 concurrent connections each posting a distinct event are all journaled") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  constexpr int kConnections = 50;
  std::vector<std::string> ids(kConnections);
  for (auto& id : ids)
    id = new_log_id();
  std::vector<int> statuses(kConnections, 0);
  std::vector<std::string> answered_ids(kConnections);
  std::vector<std::string> errors(kConnections);
  {
    std::latch connected(kConnections);
    std::vector<std::jthread> threads;
    for (int i = 0; i < kConnections; ++i) {
      threads.emplace_back([&, i] {
        std::unique_ptr<HttpConnection> connection;
        try {
          connection = std::make_unique<HttpConnection>(server.port());
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
        // All 50 connections are open before any of them sends.
        connected.arrive_and_wait();
        if (!connection) return;
        try {
          const auto r = connection->send(post_event(event_with_log_id(ids[i])));
          statuses[i] = r.status;
          answered_ids[i] = json_str(parse_json(r.body), "/logId");
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
  }
  for (int i = 0; i < kConnections; ++i) {
    CAPTURE(i);
    CHECK(errors[i] == "");
    CHECK(statuses[i] == 200);
    CHECK(answered_ids[i] == ids[i]);
  }
  const Journal journal(server.journal_path());
  CHECK(journal.count("events") == kConnections);
  CHECK(journal.count("event_attempts") == kConnections);
  for (const auto& id : ids)
    CHECK(journal.count("events", "log_id = ?", {id}) == 1);
}
