// The NATS dispatcher's pure parts: consumer and subject names, AckWait, Fbr-* header reading and
// what a worker does with each outcome (the same retry arithmetic as the SQLite dispatcher).
#include "server/journal/nats/dispatcher.hpp"

#include <doctest/doctest.h>

#include <string>

#include "server/journal/nats/journal.hpp"

using namespace fbr::server;
using std::chrono::milliseconds;

namespace {

/// A message with these headers, as the journal stream would carry it (no server involved).
struct TestMsg {
  natsMsg* msg = nullptr;
  explicit TestMsg(const std::vector<std::pair<std::string, std::string>>& headers) {
    nats_Open(-1);
    REQUIRE(natsMsg_Create(&msg, "fbr.events", nullptr, "{}", 2) == NATS_OK);
    for (const auto& [name, value] : headers)
      REQUIRE(natsMsgHeader_Set(msg, name.c_str(), value.c_str()) == NATS_OK);
  }
  ~TestMsg() { natsMsg_Destroy(msg); }
  TestMsg(const TestMsg&) = delete;
  TestMsg& operator=(const TestMsg&) = delete;
};

}  // namespace

TEST_CASE("nats dispatch: consumer names are fbr- plus the handler name made safe") {
  CHECK(nats_consumer_name("archive", false) == "fbr-archive");
  CHECK(nats_consumer_name("archive", true) == "fbr-archive-replay");
  CHECK(nats_consumer_name("to-S3_v2", false) == "fbr-to-S3_v2");
  // Handler names may hold dots: not allowed in a consumer name.
  CHECK(nats_consumer_name("files.daily", false) == "fbr-files_daily");
  CHECK(nats_consumer_name("a.b", true) == "fbr-a_b-replay");
}

TEST_CASE("nats dispatch: replay and dead-letter subjects sit under the events subject") {
  CHECK(nats_replay_subject("fbr.events", "archive") == "fbr.events.replay.archive");
  CHECK(nats_dead_subject("fbr.events", "archive") == "fbr.events.dead.archive");
  CHECK(nats_dead_subject("x", "a.b") == "x.dead.a.b");
}

TEST_CASE("nats dispatch: AckWait is the first back-off within 5 to 30 seconds") {
  CHECK(nats_ack_wait({10, 1000, 300000}) == milliseconds(5000));
  CHECK(nats_ack_wait({10, 12000, 300000}) == milliseconds(12000));
  CHECK(nats_ack_wait({10, 600000, 900000}) == milliseconds(30000));
  CHECK(nats_ack_wait({1, 0, 0}) == milliseconds(5000));
}

TEST_CASE("nats dispatch: Fbr-Handlers lists a handler only by its whole name") {
  CHECK(lists_handler("archive", "archive"));
  CHECK(lists_handler("files,archive,hook", "archive"));
  CHECK(lists_handler("files, archive ,hook", "archive"));
  CHECK_FALSE(lists_handler("archive2,xarchive", "archive"));
  CHECK_FALSE(lists_handler("", "archive"));
  CHECK_FALSE(lists_handler(",,", "archive"));
  CHECK(lists_handler("a.b", "a.b"));
  CHECK_FALSE(lists_handler("a.b", "a"));
}

TEST_CASE("nats dispatch: event fields come from the message headers") {
  TestMsg m({{"Nats-Msg-Id", "d9f5d293-7110-461e-a875-3beb089e79f3"},
             {"Fbr-Log-Id", "d9f5d293-7110-461e-a875-3beb089e79f3"},
             {"Fbr-Attempt-Id", "att-1"},
             {"Fbr-Status", "200"},
             {"Fbr-Handlers", "files,hook"}});
  const auto h = read_event_headers(m.msg);
  CHECK(h.event_key == "d9f5d293-7110-461e-a875-3beb089e79f3");
  CHECK(h.log_id == "d9f5d293-7110-461e-a875-3beb089e79f3");
  CHECK(h.attempt_id == "att-1");
  CHECK(h.status == 200);
  CHECK(h.handlers == "files,hook");
}

TEST_CASE("nats dispatch: Fbr-Event-Key is the key when Nats-Msg-Id is a hash of it") {
  TestMsg m({{"Nats-Msg-Id", "sha256:0123"},
             {"Fbr-Event-Key", "a key unfit for a header"},
             {"Fbr-Replay-Of", "42"}});
  const auto h = read_event_headers(m.msg);
  CHECK(h.event_key == "a key unfit for a header");
  CHECK(h.msg_id == "sha256:0123");
  CHECK(h.replay_of == "42");
}

TEST_CASE("nats dispatch: missing or malformed headers read as empty") {
  TestMsg m({{"Nats-Msg-Id", "sha256:abc"}, {"Fbr-Status", "20x"}});
  const auto h = read_event_headers(m.msg);
  CHECK(h.event_key == "sha256:abc");
  CHECK(h.log_id.empty());
  CHECK(h.handlers.empty());
  CHECK(h.status == 0);
  TestMsg none({});
  CHECK(read_event_headers(none.msg).event_key.empty());
}

TEST_CASE("nats dispatch: header values lose line breaks and are bounded") {
  CHECK(nats_names::header_value("exit status 1\nstderr: boom\r\n", 1024) ==
        "exit status 1 stderr: boom  ");
  CHECK(nats_names::header_value(std::string(5000, 'x'), 1024).size() == 1024);
  CHECK(nats_names::header_value("abc", 2) == "ab");
}

TEST_CASE("nats dispatch: done acks and a permanent failure is dead at once") {
  const fbr::core::RetryPolicy policy{5, 1000, 60000};
  CHECK(nats_decision(1, Outcome::done(), policy, 0.5).kind == NatsDecision::Kind::kAck);
  const auto dead = nats_decision(1, Outcome::dead("HTTP 404"), policy, 0.5);
  CHECK(dead.kind == NatsDecision::Kind::kDead);
  CHECK(dead.error == "HTTP 404");
}

TEST_CASE("nats dispatch: a retry naks with the growing back-off until max_attempts") {
  const fbr::core::RetryPolicy policy{4, 1000, 60000};
  const auto first = nats_decision(1, Outcome::retry("boom"), policy, 0.0);
  const auto second = nats_decision(2, Outcome::retry("boom"), policy, 0.0);
  const auto third = nats_decision(3, Outcome::retry("boom"), policy, 0.0);
  CHECK(first.kind == NatsDecision::Kind::kNak);
  CHECK(first.delay == milliseconds(500));  // equal jitter at 0: half the 1 s ceiling
  CHECK(second.delay == milliseconds(1000));
  CHECK(third.delay == milliseconds(2000));
  CHECK(first.error == "boom");
  const auto last = nats_decision(4, Outcome::retry("boom"), policy, 0.0);
  CHECK(last.kind == NatsDecision::Kind::kDead);
  CHECK(last.error == "gave up after 4 attempts: boom");
}

TEST_CASE("nats dispatch: Retry-After sets the nak delay within max_backoff_ms") {
  const fbr::core::RetryPolicy policy{10, 1000, 60000};
  CHECK(nats_decision(1, Outcome::retry("503", milliseconds(7000)), policy, 0.5).delay ==
        milliseconds(7000));
  CHECK(nats_decision(1, Outcome::retry("503", milliseconds(3'600'000)), policy, 0.5).delay ==
        milliseconds(60000));
}
