// The NATS test fixtures themselves: a 3-node JetStream cluster that keeps a replicated stream
// writable with one node down, which the scale-out tests rely on.
#include <doctest/doctest.h>

#include <thread>

#include "tests/integration/nats_support.hpp"

namespace fbr::itest {

TEST_CASE("nats test cluster keeps a replicated stream writable with one node down") {
  if (auto why = NatsCluster::unavailable()) return skip_test(*why);
  NatsCluster cluster(3);
  NatsProbe probe(cluster.urls());
  probe.add_stream("FIXTURE", {"fixture.>"}, 3);
  CHECK(probe.stream_replicas("FIXTURE") == 3);
  CHECK_FALSE(probe.publish("fixture.a", "one", "id-1"));
  CHECK(probe.publish("fixture.a", "one again", "id-1"));  // JetStream de-duplicates by Msg-Id
  cluster.kill(2);
  // The two left are a majority: publishes still get acks (after a leader election at worst).
  bool published = false;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!published && std::chrono::steady_clock::now() < deadline) {
    try {
      probe.publish("fixture.b", "two", "id-2");
      published = true;
    } catch (const std::exception&) {
      std::this_thread::sleep_for(100ms);
    }
  }
  CHECK(published);
  cluster.start(2);
  auto messages = probe.messages("FIXTURE");
  REQUIRE(messages.size() == 2);
  CHECK(messages[0].data == "one");
  CHECK(messages[0].headers["Nats-Msg-Id"] == "id-1");
  CHECK(messages[1].subject == "fixture.b");
}

}  // namespace fbr::itest
