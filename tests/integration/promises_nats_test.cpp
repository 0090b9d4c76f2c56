// README promises of the NATS JetStream journal that had no test (issue 13): no ack within 5 s
// answers 503 (a nats-server stopped with SIGSTOP: the TCP connection stays up, no ack comes),
// and an event over nats-server's max_payload answers 503. Real nats-server on 127.0.0.1.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/nats_support.hpp"

using namespace fbr::itest;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kStream = "FBR_PROMISES";
const std::string kSubject = "fbr.promises";

ServerConfig nats_config(const NatsCluster& cluster) {
  ServerConfig config;
  config.extra_members = R"("journal": {"backend": "nats", "nats": {"servers": )" +
                         cluster.servers_json() + R"(, "stream": ")" + kStream +
                         R"(", "subject": ")" + kSubject + R"("}})";
  return config;
}

/// Posts until one answers 200 (JetStream may need a moment after the receiver connects).
void wait_accepting(const Server& server) {
  const auto deadline = Clock::now() + 20s;
  int status = 0;
  while (Clock::now() < deadline) {
    status = http(server.port(), post_event(event_with_log_id(new_log_id())), 10s).status;
    if (status == 200) return;
    std::this_thread::sleep_for(100ms);
  }
  FAIL("the receiver never answered 200 (last ", status, "):\n", server.log_tail());
}

/// The state letter of /proc/PID/stat ('T': stopped), '?' when unreadable.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
}

/// SIGCONTs a stopped nats-server on every way out of the test, so it can be stopped and reaped.
struct Continue {
  pid_t pid;
  ~Continue() {
    if (pid > 0) ::kill(pid, SIGCONT);
  }
};

}  // namespace

TEST_CASE(
    "promises nats: no JetStream ack within 5 s (nats-server SIGSTOPped) answers 503 with "
    "Retry-After") {
  if (auto why = NatsCluster::unavailable()) FAIL(*why);
  NatsCluster cluster(1);
  TempDir dir;
  Server server(dir, nats_config(cluster));
  INFO("server log tail:\n", server.log_tail());
  wait_accepting(server);

  const pid_t nats = cluster.pid(0);
  REQUIRE(nats > 0);
  REQUIRE(::kill(nats, SIGSTOP) == 0);
  const Continue resume{nats};
  REQUIRE_MESSAGE(dispatch::poll_until([&] { return process_state(nats) == 'T'; }, 5s),
                  "nats-server (pid ", nats, ") did not stop: state ", process_state(nats));
  const std::string id = new_log_id();
  const auto posted = Clock::now();
  const auto r = http(server.port(), post_event(event_with_log_id(id)), 15s);
  const long long waited = ms_since(posted);
  CHECK_MESSAGE(r.status == 503, r.status, " ", r.body);
  CHECK(r.header("Retry-After").has_value());
  CHECK_MESSAGE(waited >= 4500, "answered after ", waited, " ms, before the 5 s ack timeout");
  CHECK_MESSAGE(waited <= 8000, "answered after ", waited, " ms");
  CHECK(server.wait_for_log("no acknowledgement within 5000 ms", 5s));
  ::kill(nats, SIGCONT);

  // NATS is back: Redox's retry of the same event gets its 200 (a duplicate if the first
  // publish was stored after all).
  const auto deadline = Clock::now() + 20s;
  int status = 0;
  while (Clock::now() < deadline && status != 200) {
    status = http(server.port(), post_event(event_with_log_id(id)), 10s).status;
    if (status != 200) std::this_thread::sleep_for(100ms);
  }
  CHECK(status == 200);
}

TEST_CASE(
    "promises nats: an event over nats-server's max_payload answers 503 at once and is not "
    "stored - smaller ones 200") {
  if (auto why = NatsCluster::unavailable()) FAIL(*why);
  NatsCluster cluster(1, "max_payload: 16384");
  TempDir dir;
  Server server(dir, nats_config(cluster));
  INFO("server log tail:\n", server.log_tail());
  wait_accepting(server);
  CHECK_MESSAGE(server.wait_for_log("nats_max_payload_too_small", 5s),
                "no warning that max_payload is smaller than max_body_bytes");

  const std::string big = new_log_id();
  const auto posted = Clock::now();
  const auto r = http(server.port(), post_event(event_with_padding(big, 20000)), 15s);
  const long long waited = ms_since(posted);
  CHECK_MESSAGE(r.status == 503, r.status, " ", r.body);
  CHECK(r.header("Retry-After").has_value());
  CHECK_MESSAGE(waited < 3000, "answered after ", waited, " ms: it waited for an ack timeout");

  const std::string small = new_log_id();
  CHECK(http(server.port(), post_event(event_with_padding(small, 2000))).status == 200);

  NatsProbe probe(cluster.urls());
  bool big_stored = false;
  bool small_stored = false;
  for (const auto& m : probe.messages(kStream, kSubject)) {
    big_stored |= m.headers.count("Nats-Msg-Id") && m.headers.at("Nats-Msg-Id") == big;
    small_stored |= m.headers.count("Nats-Msg-Id") && m.headers.at("Nats-Msg-Id") == small;
  }
  CHECK_FALSE(big_stored);
  CHECK(small_stored);
}
