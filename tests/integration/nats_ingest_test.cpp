// journal.backend "nats": the receiver journals to a JetStream stream (real nats-server on
// 127.0.0.1) and answers 200 only after JetStream's ack; 503 with Retry-After while NATS is down,
// recovering by itself; quarantine, and the events / replay CLI against the stream.
#include <doctest/doctest.h>

#include <cstdlib>
#include <thread>

#include "tests/integration/nats_support.hpp"

namespace fbr::itest {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kStream = "FBR_TEST";
constexpr const char* kSubject = "fbr.test";

/// The journal and handler members of a receiver config on `servers` (a JSON array).
/// The journal and handler members of a receiver config on `servers` (a JSON array); the file
/// handlers write under `dir`.
std::string nats_members(const std::string& servers, const TempDir& dir,
                         const std::string& more_nats = {}) {
  const std::string out = (dir.path() / "out").string();
  return R"("journal": {"backend": "nats", "nats": {"servers": )" + servers + R"(, "stream": ")" +
         kStream + R"(", "subject": ")" + kSubject + R"(", "duplicate_window_s": 600)" + more_nats +
         R"(}},
    "handlers": [{"name": "archive", "type": "file", "dir": ")" +
         out +
         R"(/200", "when": {"status": [200]}},
                 {"name": "progress", "type": "file", "dir": ")" +
         out + R"(/202", "when": {"status": [202]}}])";
}

ServerConfig nats_config(const NatsCluster& cluster, const TempDir& dir) {
  ServerConfig config;
  config.extra_members = nats_members(cluster.servers_json(), dir);
  return config;
}

bool skip_without_nats() {
  if (auto why = NatsCluster::unavailable()) {
    skip_test(*why);
    return true;
  }
  return false;
}

/// Polls GET /readyz until it answers `status`; false at the deadline.
bool wait_ready(const Server& server, int status, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    try {
      if (http(server.port(), get("/readyz"), 5s).status == status) return true;
    } catch (const std::exception&) {
      // not answering yet
    }
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::vector<StreamMessage> events_in(NatsProbe& probe) {
  return probe.messages(kStream, kSubject);
}

}  // namespace

TEST_CASE("nats ingest: 200 only once the event is in the stream with its headers") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  TempDir dir;
  Server server(dir, nats_config(cluster, dir));
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  NatsProbe probe(cluster.urls());
  // The stream as configured: both subjects, one replica.
  CHECK(probe.stream_replicas(kStream) == 1);

  const std::string log_id = new_log_id();
  const std::string body = event_with_log_id(log_id);
  auto response = http(server.port(), post_event(body, "test-token"));
  REQUIRE_MESSAGE(response.status == 200, response.body, server.log_tail());
  auto doc = parse_json(response.body);
  CHECK(json_str(doc, "/logId") == log_id);
  CHECK(json_raw(doc, "/duplicate") == "false");

  // The 200 came after the ack: the message is there now, no waiting.
  auto messages = events_in(probe);
  REQUIRE(messages.size() == 1);
  auto& m = messages.front();
  CHECK(m.subject == kSubject);
  CHECK(m.data == body);
  CHECK(m.headers["Nats-Msg-Id"] == log_id);
  CHECK(m.headers["Fbr-Event-Key"] == log_id);
  CHECK(m.headers["Fbr-Log-Id"] == log_id);
  CHECK(m.headers["Fbr-Status"] == "200");
  CHECK(m.headers["Fbr-Output-Count"] == "2");
  CHECK(m.headers["Fbr-Handlers"] == "archive");  // "progress" wants status 202 only
  CHECK_FALSE(m.headers["Fbr-Attempt-Id"].empty());
  CHECK(m.headers["Fbr-Remote-Addr"].starts_with("127.0.0.1"));
  CHECK(m.headers["Fbr-Request-Id"] == response.header("X-Request-Id").value_or("?"));
  CHECK(m.headers["Fbr-Received-At"].size() >= 20);
  CHECK(m.headers.count("Fbr-Test") == 1);  // the seed event sets Meta.Test

  // An in-progress event lists the 202 handler.
  const std::string in_progress = fixture("in-progress.json");
  response = http(server.port(), post_event(in_progress, "test-token"));
  REQUIRE_MESSAGE(response.status == 200, response.body);
  messages = events_in(probe);
  REQUIRE(messages.size() == 2);
  CHECK(messages[1].headers["Fbr-Status"] == "202");
  CHECK(messages[1].headers["Fbr-Handlers"] == "progress");
}

TEST_CASE("nats ingest: the same Log ID again is a duplicate and stays one message") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  TempDir dir;
  Server server(dir, nats_config(cluster, dir));
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  const std::string log_id = new_log_id();
  auto first = http(server.port(), post_event(event_with_log_id(log_id)));
  REQUIRE_MESSAGE(first.status == 200, first.body);
  CHECK(json_raw(parse_json(first.body), "/duplicate") == "false");
  auto again = http(server.port(), post_event(event_with_log_id(log_id)));
  REQUIRE_MESSAGE(again.status == 200, again.body);
  CHECK(json_raw(parse_json(again.body), "/duplicate") == "true");
  NatsProbe probe(cluster.urls());
  CHECK(events_in(probe).size() == 1);
  CHECK(server.wait_for_log("duplicate=true"));
}

TEST_CASE("nats ingest: NATS down gives 503 with Retry-After and never 200 then recovers") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  TempDir dir;
  Server server(dir, nats_config(cluster, dir));
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  REQUIRE(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);

  cluster.kill(0);
  REQUIRE_MESSAGE(wait_ready(server, 503), server.log_tail());
  const std::string lost = new_log_id();
  for (int i = 0; i < 5; ++i) {
    auto response = http(server.port(), post_event(event_with_log_id(lost)));
    CHECK_MESSAGE(response.status == 503, response.body);
    CHECK(response.header("Retry-After").has_value());
  }

  cluster.start(0);
  // No receiver restart: it reconnects and is ready again by itself.
  REQUIRE_MESSAGE(wait_ready(server, 200, 30s), server.log_tail());
  // JetStream may need a moment after the reconnect: Redox would retry a 503 the same way.
  int status = 0;
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline) {
    status = http(server.port(), post_event(event_with_log_id(lost))).status;
    CHECK((status == 200 || status == 503));
    if (status == 200) break;
    std::this_thread::sleep_for(100ms);
  }
  REQUIRE_MESSAGE(status == 200, server.log_tail());
  NatsProbe probe(cluster.urls());
  auto messages = events_in(probe);
  REQUIRE(messages.size() == 2);
  CHECK(messages[1].headers["Nats-Msg-Id"] == lost);
}

TEST_CASE("nats ingest: started with NATS down it answers 503 then recovers by itself") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  cluster.kill(0);
  TempDir dir;
  Server server(dir,
                nats_config(cluster, dir));  // returns once it listens: it does not wait for NATS
  auto ready = http(server.port(), get("/readyz"));
  CHECK(ready.status == 503);
  auto response = http(server.port(), post_event(event_with_log_id(new_log_id())));
  CHECK(response.status == 503);
  CHECK(response.header("Retry-After").has_value());

  cluster.start(0);
  REQUIRE_MESSAGE(wait_ready(server, 200, 30s), server.log_tail());
  const std::string log_id = new_log_id();
  response = http(server.port(), post_event(event_with_log_id(log_id)));
  REQUIRE_MESSAGE(response.status == 200, response.body, server.log_tail());
  NatsProbe probe(cluster.urls());
  auto messages = events_in(probe);
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].headers["Nats-Msg-Id"] == log_id);
  CHECK(server.wait_for_log("nats_stream_ready"));
}

TEST_CASE("nats ingest: a stream deleted under a running receiver is created again") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  TempDir dir;
  Server server(dir, nats_config(cluster, dir));
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  REQUIRE(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
  NatsProbe probe(cluster.urls());
  REQUIRE(js_DeleteStream(probe.js(), kStream, nullptr, nullptr) == NATS_OK);
  // The next publish finds no stream (503, never 200); the receiver ensures it again by itself.
  const std::string log_id = new_log_id();
  int status = 0;
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline) {
    auto response = http(server.port(), post_event(event_with_log_id(log_id)));
    status = response.status;
    CHECK_MESSAGE((status == 200 || status == 503), response.body);
    if (status == 200) break;
    CHECK(response.header("Retry-After").has_value());
    std::this_thread::sleep_for(100ms);
  }
  REQUIRE_MESSAGE(status == 200, server.log_tail());
  auto messages = events_in(probe);
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].headers["Nats-Msg-Id"] == log_id);
}

TEST_CASE("nats ingest: an invalid body is quarantined in the quarantine subject") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  TempDir dir;
  ServerConfig config = nats_config(cluster, dir);
  config.invalid_payloads = "quarantine";
  Server server(dir, config);
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  const std::string body = fixture("invalid-several-errors.json");
  auto response = http(server.port(), post_event(body));
  REQUIRE_MESSAGE(response.status == 200, response.body, server.log_tail());
  CHECK(json_str(parse_json(response.body), "/status") == "quarantined");
  NatsProbe probe(cluster.urls());
  auto quarantined = probe.messages(kStream, std::string(kSubject) + ".quarantine");
  REQUIRE(quarantined.size() == 1);
  CHECK(quarantined[0].data == body);
  auto errors = parse_json(quarantined[0].headers["Fbr-Errors"]);
  REQUIRE_FALSE(errors.HasParseError());
  REQUIRE(errors.IsArray());
  CHECK(errors.Size() >= 2);
  CHECK(json_str(errors, "/0/path").starts_with("/"));
  CHECK(events_in(probe).empty());  // nothing on the events subject
}

TEST_CASE("nats ingest: events and replay CLI read and republish from the stream") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  TempDir dir;
  Server server(dir, nats_config(cluster, dir));
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  const std::string first = new_log_id();
  const std::string second = new_log_id();
  REQUIRE(http(server.port(), post_event(event_with_log_id(first))).status == 200);
  REQUIRE(http(server.port(), post_event(event_with_log_id(second))).status == 200);
  const std::string config = server.config_path().string();

  auto listed = run_cli({"events", "--config", config, "--json"});
  REQUIRE_MESSAGE(listed.exit_code == 0, listed.output());
  auto rows = parse_json(listed.out);
  REQUIRE_MESSAGE(rows.IsArray(), listed.out);
  REQUIRE(rows.Size() == 2);
  CHECK(json_str(rows, "/0/logId") == second);  // newest first
  CHECK(json_str(rows, "/1/logId") == first);
  CHECK(json_str(rows, "/0/key") == second);
  CHECK(json_raw(rows, "/0/status") == "200");
  CHECK(json_raw(rows, "/0/outputCount") == "2");
  CHECK(json_str(rows, "/0/deliveries/0/handler") == "archive");
  const std::string state = json_str(rows, "/0/deliveries/0/state");
  CHECK((state == "pending" || state == "done"));

  auto one = run_cli({"events", "--config", config, "--log-id", first});
  REQUIRE_MESSAGE(one.exit_code == 0, one.output());
  CHECK(one.out.find(first) != std::string::npos);
  CHECK(one.out.find(second) == std::string::npos);
  CHECK(one.out.find("delivery archive") != std::string::npos);

  auto limited = run_cli({"events", "--config", config, "--limit", "1", "--json"});
  REQUIRE(limited.exit_code == 0);
  auto limited_rows = parse_json(limited.out);
  REQUIRE(limited_rows.IsArray());
  CHECK(limited_rows.Size() == 1);

  auto missing = run_cli({"events", "--config", config, "--log-id", "no-such-id"});
  CHECK(missing.exit_code == 1);

  auto replayed = run_cli({"replay", "--config", config, "--log-id", first});
  REQUIRE_MESSAGE(replayed.exit_code == 0, replayed.output());
  CHECK(replayed.out.find("archive") != std::string::npos);
  NatsProbe probe(cluster.urls());
  const std::string replay_subject = std::string(kSubject) + ".replay.archive";
  auto replays = probe.messages(kStream, replay_subject);
  REQUIRE(replays.size() == 1);
  CHECK(replays[0].data == event_with_log_id(first));
  CHECK(replays[0].headers["Fbr-Log-Id"] == first);
  CHECK(replays[0].headers["Fbr-Event-Key"] == first);
  CHECK(replays[0].headers["Fbr-Handlers"] == "archive");
  CHECK(replays[0].headers["Nats-Msg-Id"].starts_with(first + ":replay:archive:"));
  CHECK_FALSE(replays[0].headers["Fbr-Replay-Of"].empty());

  // Only one handler, and a handler that is not configured is an error.
  auto only = run_cli({"replay", "--config", config, "--log-id", first, "--handler", "progress"});
  REQUIRE_MESSAGE(only.exit_code == 0, only.output());
  CHECK(probe.messages(kStream, std::string(kSubject) + ".replay.progress").size() == 1);
  auto unknown = run_cli({"replay", "--config", config, "--log-id", first, "--handler", "nope"});
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.err.find("nope") != std::string::npos);
  auto absent = run_cli({"replay", "--config", config, "--log-id", "no-such-id"});
  CHECK(absent.exit_code == 1);

  // NATS down: the CLI says which servers it could not reach, quickly.
  cluster.kill(0);
  auto down = run_cli({"events", "--config", config}, {}, 20s);
  CHECK(down.exit_code == 1);
  CHECK(down.err.find("cannot connect to NATS") != std::string::npos);
}

TEST_CASE("nats ingest: events shows done and dead deliveries from consumers and dead letters") {
  if (skip_without_nats()) return;
  NatsCluster cluster;
  TempDir dir;
  ServerConfig config;
  config.extra_members = R"("journal": {"backend": "nats", "nats": {"servers": )" +
                         cluster.servers_json() + R"(, "stream": ")" + kStream +
                         R"(", "subject": ")" + kSubject + R"("}},
    "handlers": [{"name": "archive", "type": "file", "dir": ")" +
                         (dir.path() / "out").string() + R"("},
                 {"name": "broken", "type": "exec", "command": ["/bin/false"],
                  "retry": {"max_attempts": 1}}])";
  Server server(dir, config);
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  const std::string log_id = new_log_id();
  REQUIRE(http(server.port(), post_event(event_with_log_id(log_id))).status == 200);
  const std::string file = server.config_path().string();
  std::string archive, broken, last_error, out;
  const auto deadline = Clock::now() + 30s;
  while (Clock::now() < deadline) {
    auto listed = run_cli({"events", "--config", file, "--log-id", log_id, "--json"});
    REQUIRE_MESSAGE(listed.exit_code == 0, listed.output());
    out = listed.out;
    auto rows = parse_json(listed.out);
    REQUIRE(rows.IsArray());
    REQUIRE(rows.Size() == 1);
    archive = json_str(rows, "/0/deliveries/0/state");
    broken = json_str(rows, "/0/deliveries/1/state");
    last_error = json_str(rows, "/0/deliveries/1/lastError");
    if (archive == "done" && broken == "dead") break;
    std::this_thread::sleep_for(200ms);
  }
  INFO(out);
  INFO(server.log_tail());
  CHECK(archive == "done");
  CHECK(broken == "dead");
  CHECK_FALSE(last_error.empty());
}

TEST_CASE("nats ingest: a token from token_env authenticates and is never shown or logged") {
  if (skip_without_nats()) return;
  TempDir nats_dir;
  const unsigned short port = free_port();
  const std::string token = "s3cret-nats-token-4242";
  ChildProcess nats_server({"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port), "-js",
                            "-sd", (nats_dir.path() / "js").string(), "--auth", token},
                           nats_dir.path() / "nats.log");
  const auto deadline = Clock::now() + 10s;
  while (!accepts_connections(port) && Clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  REQUIRE_MESSAGE(accepts_connections(port), nats_server.log());
  ::setenv("NATS_ITEST_TOKEN", token.c_str(), 1);
  const std::string servers = R"(["nats://127.0.0.1:)" + std::to_string(port) +
                              R"(", "nats://jsuser:pa55word@127.0.0.1:)" + std::to_string(port) +
                              R"("])";
  TempDir dir;
  ServerConfig config;
  config.extra_members = nats_members(servers, dir, R"(, "token_env": "NATS_ITEST_TOKEN")");
  Server server(dir, config);
  REQUIRE_MESSAGE(wait_ready(server, 200), server.log_tail());
  auto response = http(server.port(), post_event(event_with_log_id(new_log_id())));
  CHECK_MESSAGE(response.status == 200, response.body);

  auto checked = run_cli({"check-config", "--config", server.config_path().string()});
  REQUIRE_MESSAGE(checked.exit_code == 0, checked.output());
  CHECK(checked.out.find("NATS_ITEST_TOKEN") != std::string::npos);
  CHECK(checked.output().find(token) == std::string::npos);
  CHECK(checked.output().find("pa55word") == std::string::npos);
  CHECK(server.log().find(token) == std::string::npos);
  CHECK(server.log().find("pa55word") == std::string::npos);

  auto listed = run_cli({"events", "--config", server.config_path().string(), "--json"});
  CHECK_MESSAGE(listed.exit_code == 0, listed.output());
  CHECK(listed.output().find(token) == std::string::npos);

  // Without the variable the receiver refuses to start, naming the variable, not a value.
  ::unsetenv("NATS_ITEST_TOKEN");
  auto refused = run_cli({"serve", "--config", server.config_path().string()}, {}, 20s);
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("NATS_ITEST_TOKEN") != std::string::npos);
}

}  // namespace fbr::itest
