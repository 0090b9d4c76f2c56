// The NATS stream contract (nats/stream.hpp): consumer and subject names, Fbr-* header values and
// their readers, and the dead letters and replays built from an event message.
#include "server/journal/nats/stream.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

using namespace fbr::server;
using namespace fbr::server::nats_stream;

namespace {

/// A message with these headers, as the journal stream would carry it (no server involved).
struct TestMsg {
  natsMsg* msg = nullptr;
  explicit TestMsg(const std::vector<std::pair<std::string, std::string>>& headers,
                   const char* subject = "fbr.events") {
    nats_Open(-1);
    REQUIRE(natsMsg_Create(&msg, subject, nullptr, "{}", 2) == NATS_OK);
    for (const auto& [name, value] : headers)
      REQUIRE(natsMsgHeader_Set(msg, name.c_str(), value.c_str()) == NATS_OK);
  }
  ~TestMsg() { natsMsg_Destroy(msg); }
  TestMsg(const TestMsg&) = delete;
  TestMsg& operator=(const TestMsg&) = delete;
};

std::string value_of(const nats::Message& m, const std::string& name) {
  for (const auto& [key, value] : m.headers) {
    if (key == name) return value;
  }
  return "<absent>";
}

}  // namespace

TEST_CASE("nats dispatch: consumer names are fbr- plus the handler name made safe") {
  CHECK(consumer_name("archive", false) == "fbr-archive");
  CHECK(consumer_name("archive", true) == "fbr-archive-replay");
  CHECK(consumer_name("to-S3_v2", false) == "fbr-to-S3_v2");
  // Handler names may hold dots: not allowed in a consumer name.
  CHECK(consumer_name("files.daily", false) == "fbr-files_daily");
  CHECK(consumer_name("a.b", true) == "fbr-a_b-replay");
  CHECK(consumer_name("archive") == "fbr-archive");
}

TEST_CASE("nats dispatch: replay and dead-letter subjects sit under the events subject") {
  CHECK(replay_subject("fbr.events", "archive") == "fbr.events.replay.archive");
  CHECK(dead_subject("fbr.events", "archive") == "fbr.events.dead.archive");
  CHECK(dead_subject("x", "a.b") == "x.dead.a.b");
  CHECK(quarantine_subject("fbr.events") == "fbr.events.quarantine");
  CHECK(dead_letters("fbr.events") == "fbr.events.dead.>");
  CHECK(dead_subject_handler("fbr.events", "fbr.events.dead.a.b") == "a.b");
  CHECK(dead_subject_handler("fbr.events", "fbr.events.replay.a").empty());
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

TEST_CASE("nats stream: Fbr-Handlers is written and read back as the same names") {
  CHECK(handlers_value({"files", "hook"}) == "files,hook");
  CHECK(handlers_value({}).empty());
  CHECK(split_handlers(handlers_value({"files", "a.b"})) ==
        std::vector<std::string>{"files", "a.b"});
  CHECK(split_handlers(" files, ,hook ") == std::vector<std::string>{"files", "hook"});
}

TEST_CASE("nats stream: an event key unfit for a header gets a hashed Nats-Msg-Id") {
  CHECK(msg_id_for("d9f5d293-7110-461e-a875-3beb089e79f3") ==
        "d9f5d293-7110-461e-a875-3beb089e79f3");
  CHECK(msg_id_for("a\nb").starts_with("sha256:"));
  CHECK(msg_id_for(" padded").starts_with("sha256:"));
  CHECK(msg_id_for("").starts_with("sha256:"));
  CHECK(msg_id_for(std::string(513, 'k')).starts_with("sha256:"));
  CHECK(msg_id_for(std::string(512, 'k')) == std::string(512, 'k'));
}

TEST_CASE("nats dispatch: event fields come from the message headers") {
  TestMsg m({{"Nats-Msg-Id", "d9f5d293-7110-461e-a875-3beb089e79f3"},
             {"Fbr-Log-Id", "d9f5d293-7110-461e-a875-3beb089e79f3"},
             {"Fbr-Attempt-Id", "att-1"},
             {"Fbr-Status", "200"},
             {"Fbr-Handlers", "files,hook"},
             {"Fbr-Received-At", "2026-01-01T00:00:00.000Z"},
             {"Fbr-Remote-Addr", "127.0.0.1:5"},
             {"Fbr-Request-Id", "req-1"},
             {"Fbr-Output-Count", "3"}});
  const auto h = read_event_headers(m.msg);
  CHECK(h.event_key == "d9f5d293-7110-461e-a875-3beb089e79f3");
  CHECK(h.log_id == "d9f5d293-7110-461e-a875-3beb089e79f3");
  CHECK(h.attempt_id == "att-1");
  CHECK(h.status == 200);
  CHECK(h.handlers == "files,hook");
  CHECK(h.received_at == "2026-01-01T00:00:00.000Z");
  CHECK(h.remote_addr == "127.0.0.1:5");
  CHECK(h.request_id == "req-1");
  CHECK(h.output_count == 3);
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
  CHECK(h.output_count == 0);
  TestMsg none({});
  CHECK(read_event_headers(none.msg).event_key.empty());
  CHECK(header(none.msg, kLogId).empty());
}

TEST_CASE("nats dispatch: header values lose line breaks and are bounded") {
  CHECK(header_value("exit status 1\nstderr: boom\r\n", 1024) == "exit status 1 stderr: boom  ");
  CHECK(header_value(std::string(5000, 'x'), 1024).size() == 1024);
  CHECK(header_value("abc", 2) == "ab");
}

TEST_CASE("nats stream: a dead letter carries the event's headers, its sequence and the error") {
  TestMsg event({{"Nats-Msg-Id", "log-1"},
                 {"Fbr-Event-Key", "log-1"},
                 {"Fbr-Log-Id", "log-1"},
                 {"Fbr-Handlers", "files,hook"},
                 {"Fbr-Stream-Seq", "999"}});
  const auto headers = read_event_headers(event.msg);
  const auto m =
      dead_letter("fbr.events", event.msg, headers, "log-1", 7, "hook", "HTTP 404\nnot found", 3);
  CHECK(m.subject == "fbr.events.dead.hook");
  CHECK(m.msg_id == "log-1:dead:hook");
  CHECK(m.body == "{}");
  CHECK(value_of(m, "Nats-Msg-Id") == "<absent>");  // the dead letter's own, set from msg_id
  CHECK(value_of(m, kLogId) == "log-1");
  CHECK(value_of(m, kHandlers) == "files,hook");
  CHECK(value_of(m, kHandler) == "hook");
  CHECK(value_of(m, kStreamSeq) == "7");  // not the copied 999
  CHECK(value_of(m, kError) == "HTTP 404 not found");
  CHECK(value_of(m, kAttempts) == "3");

  // A replay's dead letter points at the event it replayed, under a Nats-Msg-Id of its own.
  TestMsg replayed({{"Nats-Msg-Id", "log-1:replay:hook:5"}, {"Fbr-Replay-Of", "7"}});
  const auto again = dead_letter("fbr.events", replayed.msg, read_event_headers(replayed.msg),
                                 "log-1", 12, "hook", "boom", 1);
  CHECK(again.msg_id == "log-1:replay:hook:5:dead:hook");
  CHECK(value_of(again, kStreamSeq) == "7");
}

TEST_CASE("nats stream: a dead letter reads back as the event and handler it stands for") {
  TestMsg m({{"Fbr-Event-Key", "log-1"},
             {"Fbr-Error", "HTTP 404"},
             {"Fbr-Attempts", "4"},
             {"Fbr-Stream-Seq", "7"}},
            "fbr.events.dead.a.b");
  const auto d = read_dead_letter(m.msg, "fbr.events");
  CHECK(d.handler == "a.b");  // no Fbr-Handler: from the subject
  CHECK(d.event_key == "log-1");
  CHECK(d.error == "HTTP 404");
  CHECK(d.attempts == 4);
  CHECK(d.sequence == 7u);
  TestMsg bare({{"Nats-Msg-Id", "k:dead:h"}, {"Fbr-Handler", "h"}, {"Fbr-Attempts", "x"}},
               "fbr.events.dead.other");
  const auto b = read_dead_letter(bare.msg, "fbr.events");
  CHECK(b.handler == "h");
  CHECK(b.event_key == "k:dead:h");
  CHECK_FALSE(b.attempts.has_value());
  CHECK_FALSE(b.sequence.has_value());
}

TEST_CASE("nats stream: a replay names its handler and the event's sequence") {
  TestMsg event({{"Nats-Msg-Id", "log-1"},
                 {"Fbr-Log-Id", "log-1"},
                 {"Fbr-Handlers", "files,hook"},
                 {"Fbr-Replay-Of", "3"}});
  const auto m =
      replay("fbr.events", "log-1", 7, copy_headers(event.msg, {kHandlers, kReplayOf}), "hook", 5);
  CHECK(m.subject == "fbr.events.replay.hook");
  CHECK(m.msg_id == "log-1:replay:hook:5");
  REQUIRE(m.headers.size() == 3);
  CHECK(m.headers[0] == std::pair<std::string, std::string>{kLogId, "log-1"});
  CHECK(m.headers[1] == std::pair<std::string, std::string>{kHandlers, "hook"});
  CHECK(m.headers[2] == std::pair<std::string, std::string>{kReplayOf, "7"});
}

TEST_CASE("nats stream: JetStream errors name their code") {
  CHECK(js_code(static_cast<jsErrCode>(0)).empty());
  CHECK(js_code(static_cast<jsErrCode>(10059)) == " (JetStream error code 10059)");
  CHECK(js_error(NATS_TIMEOUT, static_cast<jsErrCode>(10059))
            .ends_with(" (JetStream error code 10059)"));
}
