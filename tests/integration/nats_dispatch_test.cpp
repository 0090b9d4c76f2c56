// Handler dispatch with the NATS JetStream journal (issue 8): each handler pulls from the durable
// consumers "fbr-<name>" (events) and "fbr-<name>-replay", shared by every receiver instance.
// Real nats-server on 127.0.0.1, the real binary, real child processes and a local HTTP target.
// Most tests publish events into the journal stream themselves, with the headers the ingest side
// writes (the contract in server/journal/nats/stream.hpp), so they test the dispatcher alone; one
// posts over HTTP end to end. Waiting is always a poll with a deadline.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/nats_support.hpp"

using namespace fbr::itest;
using namespace fbr::itest::dispatch;
namespace fs = std::filesystem;

namespace {

const std::string kStream = "FBR_T";
const std::string kSubject = "fbr.t";

#define SKIP_WITHOUT_NATS()                                            \
  do {                                                                 \
    if (auto why = NatsCluster::unavailable()) return skip_test(*why); \
  } while (false)

std::string nats_journal(const NatsCluster& cluster) {
  return R"("journal": {"backend": "nats", "nats": {"servers": )" + cluster.servers_json() +
         R"(, "stream": ")" + kStream + R"(", "subject": ")" + kSubject + R"("}})";
}

std::string handlers(const std::vector<std::string>& entries) {
  std::string out = R"("handlers": [)";
  for (std::size_t i = 0; i < entries.size(); ++i)
    out += (i == 0 ? "" : ", ") + entries[i];
  return out + "]";
}

std::string exec_handler(const std::string& name, const fs::path& script,
                         const std::vector<std::string>& args = {}, const std::string& more = {}) {
  std::string command = R"(["/bin/sh", )" + json_string(script.string());
  for (const auto& a : args)
    command += ", " + json_string(a);
  return R"({"name": )" + json_string(name) + R"(, "type": "exec", "command": )" + command + "]" +
         (more.empty() ? "" : ", " + more) + "}";
}

std::string retry(int max_attempts, int initial_ms, int max_ms) {
  return R"("retry": {"max_attempts": )" + std::to_string(max_attempts) +
         R"(, "initial_backoff_ms": )" + std::to_string(initial_ms) + R"(, "max_backoff_ms": )" +
         std::to_string(max_ms) + "}";
}

ServerConfig nats_server(const NatsCluster& cluster, const std::string& more) {
  ServerConfig config;
  config.extra_members = nats_journal(cluster) + ", " + more;
  return config;
}

/// Waits until the receiver's consumer for this handler is bound (so a publish is not raced).
void wait_consumer_ready(const Server& server, const std::string& consumer) {
  const auto line =
      server.wait_for_line({"dispatcher_consumer_ready", "consumer=" + consumer + " "}, 20s);
  REQUIRE_MESSAGE(line.has_value(), "consumer ", consumer, " never ready:\n", server.log_tail());
}

/// Publishes an event into the journal stream as the ingest side does (headers of
/// server/journal/nats/stream.hpp), listing `matched` in Fbr-Handlers. Returns the body.
std::string publish_event(NatsProbe& probe, const std::string& log_id, const std::string& matched,
                          const std::string& subject = kSubject,
                          std::map<std::string, std::string> more = {}) {
  const std::string body = event_with_log_id(log_id);
  more.emplace("Fbr-Event-Key", log_id);
  more.emplace("Fbr-Log-Id", log_id);
  more.emplace("Fbr-Status", "200");
  more.emplace("Fbr-Attempt-Id", "attempt-" + log_id);
  more.emplace("Fbr-Received-At", "2024-05-01T10:00:00.000Z");
  more.emplace("Fbr-Handlers", matched);
  std::string msg_id = log_id;
  if (subject != kSubject) msg_id += ":" + subject;
  probe.publish(subject, body, msg_id, more);
  return body;
}

/// The consumer has nothing left to deliver and nothing delivered without an ack.
bool drained(NatsProbe& probe, const std::string& consumer) {
  const auto state = probe.consumer(kStream, consumer);
  return state && state->num_pending == 0 && state->num_ack_pending == 0;
}

std::string consumer_text(NatsProbe& probe, const std::string& consumer) {
  const auto s = probe.consumer(kStream, consumer);
  if (!s) return consumer + ": none";
  std::ostringstream out;
  out << consumer << ": pending " << s->num_pending << ", ack pending " << s->num_ack_pending
      << ", redelivered " << s->num_redelivered;
  return out.str();
}

std::vector<StreamMessage> dead_letters(NatsProbe& probe, const std::string& handler) {
  return probe.messages(kStream, kSubject + ".dead." + handler);
}

std::size_t files_in(const fs::path& dir) {
  std::error_code ec;
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    (void)entry;
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("nats dispatch: the file handler runs each event once and acks it") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path out = dir.path() / "out";
  Server server(dir,
                nats_server(cluster, R"("dispatch": {"concurrency": 4}, )" +
                                         handlers({R"({"name": "files", "type": "file", "dir": )" +
                                                   json_string(out.string()) + "}"})));
  wait_consumer_ready(server, "fbr-files");
  NatsProbe probe(cluster.urls());
  std::map<std::string, std::string> bodies;
  for (int i = 0; i < 20; ++i) {
    const auto id = new_log_id();
    bodies[id] = publish_event(probe, id, "files");
  }
  const bool all =
      poll_until([&] { return files_in(out) == 20 && drained(probe, "fbr-files"); }, 30s);
  INFO(server.log_tail());
  INFO(consumer_text(probe, "fbr-files"));
  REQUIRE(all);
  for (const auto& [id, body] : bodies)
    CHECK(read_file(out / (id + ".json")) == body);
  // Exactly one attempt per event, each the first.
  const auto lines = log_lines_with(server, {" delivery ", "handler=files ", "outcome=done"}, 20);
  CHECK(lines.size() == 20);
  for (const auto& line : lines)
    CHECK(log_field(line, "attempt") == "1");
  CHECK(probe.consumer(kStream, "fbr-files")->num_redelivered == 0);
}

TEST_CASE("nats dispatch: failing exec and http handlers retry with back-off then dead-letter") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  HttpTarget target;
  target.set_status("/gone", 404);
  target.set_status("/down", 503);
  const fs::path script = dir.path() / "fail.sh";
  const fs::path times = dir.path() / "times";
  write_script(script, "echo \"$FBR_DELIVERY_ATTEMPT $(date +%s%3N)\" >> '" + times.string() +
                           "'\necho 'it broke' >&2\nexit 1\n");
  const std::string http = R"(, "type": "http", "url": )";
  Server server(
      dir, nats_server(cluster,
                       handlers({exec_handler("fail", script, {}, retry(3, 300, 1000)),
                                 R"({"name": "gone")" + http + json_string(target.url("/gone")) +
                                     ", " + retry(3, 300, 1000) + "}",
                                 R"({"name": "down")" + http + json_string(target.url("/down")) +
                                     ", " + retry(2, 300, 1000) + "}"})));
  for (const auto* c : {"fbr-fail", "fbr-gone", "fbr-down"})
    wait_consumer_ready(server, c);
  NatsProbe probe(cluster.urls());
  const auto id = new_log_id();
  const auto body = publish_event(probe, id, "fail,gone,down");
  const bool dead = poll_until(
      [&] {
        return dead_letters(probe, "fail").size() == 1 && dead_letters(probe, "gone").size() == 1 &&
               dead_letters(probe, "down").size() == 1;
      },
      30s);
  INFO(server.log_tail());
  REQUIRE(dead);

  // exec: three attempts, each after at least the lower bound of its back-off (equal jitter:
  // half the ceiling: 150 ms, then 300 ms).
  const auto runs = file_lines(times);
  REQUIRE(runs.size() == 3);
  std::vector<long long> at;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    std::istringstream in(runs[i]);
    int attempt = 0;
    long long ms = 0;
    in >> attempt >> ms;
    CHECK(attempt == static_cast<int>(i) + 1);
    at.push_back(ms);
  }
  CHECK(at[1] - at[0] >= 150);
  CHECK(at[2] - at[1] >= 300);
  MESSAGE("exec retries came after " << at[1] - at[0] << " ms and " << at[2] - at[1] << " ms");
  auto letter = dead_letters(probe, "fail").front();
  CHECK(letter.data == body);
  CHECK(letter.headers["Nats-Msg-Id"] == id + ":dead:fail");
  CHECK(letter.headers["Fbr-Handler"] == "fail");
  CHECK(letter.headers["Fbr-Attempts"] == "3");
  CHECK(letter.headers["Fbr-Log-Id"] == id);
  CHECK(letter.headers["Fbr-Event-Key"] == id);
  CHECK(letter.headers["Fbr-Stream-Seq"] == "1");
  CHECK(letter.headers["Fbr-Error"].find("gave up after 3 attempts: ") == 0);
  CHECK(letter.headers["Fbr-Error"].find("it broke") != std::string::npos);

  // http 404: permanent, dead at the first attempt. 503: retried up to max_attempts.
  CHECK(target.count("/gone") == 1);
  CHECK(dead_letters(probe, "gone").front().headers["Fbr-Attempts"] == "1");
  CHECK(target.count("/down") == 2);
  CHECK(dead_letters(probe, "down").front().headers["Fbr-Attempts"] == "2");
  CHECK(log_lines_with(server, {"delivery_dead", "handler=fail "}, 1).size() == 1);
  CHECK(log_lines_with(server, {"delivery_retry_scheduled", "handler=fail "}, 2).size() == 2);

  // Dead letters are terminated: nothing left pending on any consumer.
  for (const auto* c : {"fbr-fail", "fbr-gone", "fbr-down"}) {
    INFO(consumer_text(probe, c));
    CHECK(poll_until([&] { return drained(probe, c); }, 10s));
  }
}

TEST_CASE("nats dispatch: a handler the event does not list acks and skips it") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path a = dir.path() / "a";
  const fs::path b = dir.path() / "b";
  auto file = [](const std::string& name, const fs::path& d) {
    return R"({"name": )" + json_string(name) + R"(, "type": "file", "dir": )" +
           json_string(d.string()) + "}";
  };
  Server server(dir, nats_server(cluster, handlers({file("a", a), file("b", b)})));
  wait_consumer_ready(server, "fbr-a");
  wait_consumer_ready(server, "fbr-b");
  NatsProbe probe(cluster.urls());
  const auto only_b = new_log_id();
  const auto both = new_log_id();
  const auto none = new_log_id();
  publish_event(probe, only_b, "b");
  publish_event(probe, both, "a,b");
  publish_event(probe, none, "");
  const bool done = poll_until(
      [&] {
        return files_in(b) == 2 && files_in(a) == 1 && drained(probe, "fbr-a") &&
               drained(probe, "fbr-b");
      },
      20s);
  INFO(server.log_tail());
  INFO(consumer_text(probe, "fbr-a"));
  REQUIRE(done);
  CHECK(fs::exists(a / (both + ".json")));
  CHECK_FALSE(fs::exists(a / (only_b + ".json")));
  CHECK(fs::exists(b / (only_b + ".json")));
  CHECK_FALSE(fs::exists(b / (none + ".json")));
  CHECK(log_lines_with(server, {" delivery ", "handler=a "}, 1).size() == 1);
}

TEST_CASE("nats dispatch: events posted over HTTP run the handlers their when selects") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path all = dir.path() / "all";
  const fs::path running = dir.path() / "running";
  Server server(
      dir,
      nats_server(
          cluster,
          handlers({R"({"name": "all", "type": "file", "dir": )" + json_string(all.string()) + "}",
                    R"({"name": "running", "type": "file", "dir": )" +
                        json_string(running.string()) + R"(, "when": {"status": [202]}})"})));
  wait_consumer_ready(server, "fbr-all");
  wait_consumer_ready(server, "fbr-running");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(new_log_id());
    const auto r = http(server.port(), post_event(event_with_log_id(ids.back())));
    REQUIRE_MESSAGE(r.status == 200, r.status, " ", r.body, "\n", server.log_tail());
  }
  NatsProbe probe(cluster.urls());
  const bool done = poll_until(
      [&] {
        return files_in(all) == 3 && drained(probe, "fbr-all") && drained(probe, "fbr-running");
      },
      20s);
  INFO(server.log_tail());
  INFO(consumer_text(probe, "fbr-all"));
  REQUIRE(done);
  for (const auto& id : ids)
    CHECK(read_file(all / (id + ".json")) == event_with_log_id(id));
  CHECK(files_in(running) == 0);  // status 200 events: `when` did not match
}

TEST_CASE("nats dispatch: a message on the replay subject runs that handler again") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path script = dir.path() / "record.sh";
  write_script(script, "echo \"$FBR_LOG_ID $FBR_DELIVERY_ATTEMPT $FBR_STATUS\" >> \"$1\"\n");
  const fs::path one = dir.path() / "one.txt";
  const fs::path two = dir.path() / "two.txt";
  Server server(dir, nats_server(cluster, handlers({exec_handler("one", script, {one.string()}),
                                                    exec_handler("two", script, {two.string()})})));
  for (const auto* c : {"fbr-one", "fbr-two", "fbr-one-replay", "fbr-two-replay"})
    wait_consumer_ready(server, c);
  NatsProbe probe(cluster.urls());
  const auto id = new_log_id();
  publish_event(probe, id, "one,two");
  REQUIRE(
      poll_until([&] { return file_lines(one).size() == 1 && file_lines(two).size() == 1; }, 20s));
  // What `replay --handler one` publishes: the event again, on <subject>.replay.one.
  publish_event(probe, id, "one", kSubject + ".replay.one", {{"Fbr-Replay-Of", "1"}});
  const bool replayed = poll_until(
      [&] { return file_lines(one).size() == 2 && drained(probe, "fbr-one-replay"); }, 20s);
  INFO(server.log_tail());
  INFO(consumer_text(probe, "fbr-one-replay"));
  REQUIRE(replayed);
  CHECK(file_lines(one)[1] == id + " 1 200");  // a replay is a new delivery: attempt 1 again
  CHECK(file_lines(two).size() == 1);
  CHECK(drained(probe, "fbr-one"));
  CHECK(drained(probe, "fbr-two-replay"));
}

TEST_CASE("nats dispatch: the nats handler publishes to another stream with Nats-Msg-Id") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  NatsProbe probe(cluster.urls());
  probe.add_stream("OUT", {"out.events"});
  TempDir dir;
  auto nats = [&](const std::string& name, const std::string& subject, const std::string& stream) {
    return R"({"name": )" + json_string(name) + R"(, "type": "nats", "servers": )" +
           cluster.servers_json() + R"(, "subject": )" + json_string(subject) +
           (stream.empty() ? "" : R"(, "stream": )" + json_string(stream)) + ", " +
           retry(100, 200, 500) + "}";
  };
  Server server(dir, nats_server(cluster, handlers({nats("forward", "out.events", "OUT"),
                                                    nats("nowhere", "void.events", ""),
                                                    nats("wrong", "out.events", "OTHER")})));
  wait_consumer_ready(server, "fbr-forward");
  const auto id = new_log_id();
  const auto body = publish_event(probe, id, "forward,nowhere,wrong");
  REQUIRE(poll_until([&] { return drained(probe, "fbr-forward"); }, 20s));
  INFO(server.log_tail());
  const auto out = probe.messages("OUT");
  REQUIRE(out.size() == 1);
  CHECK(out[0].data == body);
  CHECK(out[0].headers.at("Nats-Msg-Id") == id);
  CHECK(out[0].headers.at("Fbr-Log-Id") == id);
  CHECK(out[0].headers.at("Fbr-Status") == "200");
  // A second publish of the same event is recognised as a duplicate by the target stream.
  CHECK(probe.publish("out.events", body, id));
  // No stream for the subject, or another stream than configured: retried, saying why.
  const auto nowhere =
      server.wait_for_line({" delivery ", "handler=nowhere ", "outcome=retry"}, 20s);
  REQUIRE(nowhere.has_value());
  CHECK(nowhere->find("no JetStream stream stores subject void.events") != std::string::npos);
  const auto wrong = server.wait_for_line({" delivery ", "handler=wrong ", "outcome=retry"}, 20s);
  REQUIRE(wrong.has_value());
  MESSAGE("wrong stream: " << *wrong);
  CHECK(probe.messages("OUT").size() == 1);
}

TEST_CASE("nats dispatch: the nats handler works with the sqlite journal too") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  NatsProbe probe(cluster.urls());
  probe.add_stream("OUT", {"out.events"});
  TempDir dir;
  ServerConfig config;
  config.extra_members =
      handlers({R"({"name": "forward", "type": "nats", "servers": )" + cluster.servers_json() +
                R"(, "subject": "out.events", "stream": "OUT"})"});
  Server server(dir, config);
  const auto id = new_log_id();
  const auto r = http(server.port(), post_event(event_with_log_id(id)));
  REQUIRE(r.status == 200);
  INFO(server.log_tail());
  REQUIRE(wait_for_state(server, id, "forward", "done", 20s));
  const auto out = probe.messages("OUT");
  REQUIRE(out.size() == 1);
  CHECK(out[0].headers.at("Nats-Msg-Id") == id);
  CHECK(out[0].data == event_with_log_id(id));
}

TEST_CASE("nats dispatch: two receivers pulling from one durable consumer share the work") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir_a;
  TempDir dir_b;
  TempDir shared;
  const fs::path script = shared.path() / "work.sh";
  const fs::path out = shared.path() / "out.txt";
  // Short lines (< PIPE_BUF) appended with O_APPEND: the two instances' writes do not interleave.
  write_script(script, "echo \"$FBR_LOG_ID $1\" >> '" + out.string() + "'\nsleep 0.05\n");
  auto config = [&](const std::string& instance) {
    return nats_server(cluster, R"("dispatch": {"concurrency": 2}, )" +
                                    handlers({exec_handler("work", script, {instance})}));
  };
  Server a(dir_a, config("A"));
  Server b(dir_b, config("B"));
  wait_consumer_ready(a, "fbr-work");
  wait_consumer_ready(b, "fbr-work");
  NatsProbe probe(cluster.urls());
  std::set<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    const auto id = new_log_id();
    ids.insert(id);
    publish_event(probe, id, "work");
  }
  const bool done = poll_until(
      [&] {
        std::set<std::string> seen;
        for (const auto& line : file_lines(out))
          seen.insert(line.substr(0, line.find(' ')));
        return seen == ids && drained(probe, "fbr-work");
      },
      60s);
  INFO(a.log_tail(20));
  INFO(b.log_tail(20));
  INFO(consumer_text(probe, "fbr-work"));
  REQUIRE(done);
  std::map<std::string, int> by_instance;
  std::map<std::string, int> runs;
  for (const auto& line : file_lines(out)) {
    ++by_instance[line.substr(line.find(' ') + 1)];
    ++runs[line.substr(0, line.find(' '))];
  }
  CHECK(by_instance["A"] > 0);
  CHECK(by_instance["B"] > 0);
  const auto repeated =
      std::count_if(runs.begin(), runs.end(), [](const auto& r) { return r.second > 1; });
  MESSAGE("A ran " << by_instance["A"] << ", B ran " << by_instance["B"] << "; " << repeated
                   << " of 40 events ran more than once (at least once is the promise)");
  CHECK(file_lines(out).size() >= 40);
}

TEST_CASE("nats dispatch: SIGTERM during a delivery loses nothing") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path started = dir.path() / "started";
  const fs::path out = dir.path() / "out.txt";
  const fs::path script = dir.path() / "slow.sh";
  // The first attempt takes 2 s and fails; the next succeeds.
  write_script(script,
               "if [ ! -e '" + started.string() + "' ]; then touch '" + started.string() +
                   "'; sleep 2; exit 1; fi\necho \"$FBR_LOG_ID $FBR_DELIVERY_ATTEMPT\" >> '" +
                   out.string() + "'\n");
  Server server(
      dir, nats_server(cluster, handlers({exec_handler("slow", script, {}, retry(5, 200, 1000))})));
  wait_consumer_ready(server, "fbr-slow");
  NatsProbe probe(cluster.urls());
  const auto id = new_log_id();
  publish_event(probe, id, "slow");
  REQUIRE(poll_until([&] { return fs::exists(started); }, 20s));
  const auto signalled = std::chrono::steady_clock::now();
  // Stopping waits for the running delivery, which records its outcome (a retry) in JetStream.
  CHECK(server.terminate() == 0);
  const auto stop_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - signalled)
                           .count();
  CHECK(file_lines(out).empty());
  {
    // The first run ended and logged its outcome before the dispatcher stopped; a stop that did
    // not wait for it would leave no outcome line (JetStream would redeliver it after AckWait
    // all the same, so the end result alone does not show the wait).
    INFO(server.log_tail());
    const std::string log = server.log();
    const auto outcome = log.find("handler=slow attempt=1 outcome=retry");
    const auto stopped = log.find("dispatcher_stopped");
    REQUIRE_MESSAGE(outcome != std::string::npos, "no outcome line for the first run");
    REQUIRE(stopped != std::string::npos);
    CHECK_MESSAGE(outcome < stopped, "the outcome was logged after the dispatcher stopped");
    CHECK_MESSAGE(stop_ms >= 1000, "SIGTERM took ", stop_ms, " ms: it did not wait for the run");
  }
  server.start();
  const bool done =
      poll_until([&] { return file_lines(out).size() == 1 && drained(probe, "fbr-slow"); }, 30s);
  INFO(server.log_tail());
  INFO(consumer_text(probe, "fbr-slow"));
  REQUIRE(done);
  CHECK(file_lines(out)[0] == id + " 2");
}

TEST_CASE("nats dispatch: a delivery cut by kill -9 runs again after AckWait") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path started = dir.path() / "started";
  const fs::path out = dir.path() / "out.txt";
  const fs::path script = dir.path() / "slow.sh";
  write_script(script,
               "if [ ! -e '" + started.string() + "' ]; then touch '" + started.string() +
                   "'; sleep 5; exit 0; fi\necho \"$FBR_LOG_ID $FBR_DELIVERY_ATTEMPT\" >> '" +
                   out.string() + "'\n");
  Server server(dir, nats_server(cluster, handlers({exec_handler("slow", script)})));
  wait_consumer_ready(server, "fbr-slow");
  NatsProbe probe(cluster.urls());
  const auto id = new_log_id();
  publish_event(probe, id, "slow");
  REQUIRE(poll_until([&] { return fs::exists(started); }, 20s));
  server.kill9();
  server.start();
  // Nobody acknowledged it: JetStream gives it out again once its AckWait (5 s) has passed.
  const bool done =
      poll_until([&] { return file_lines(out).size() == 1 && drained(probe, "fbr-slow"); }, 30s);
  INFO(server.log_tail());
  INFO(consumer_text(probe, "fbr-slow"));
  REQUIRE(done);
  CHECK(file_lines(out)[0] == id + " 2");
}

TEST_CASE("nats dispatch: SIGHUP adds and removes handlers and keeps removed consumers") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path a = dir.path() / "a";
  const fs::path b = dir.path() / "b";
  auto file = [](const std::string& name, const fs::path& d) {
    return R"({"name": )" + json_string(name) + R"(, "type": "file", "dir": )" +
           json_string(d.string()) + "}";
  };
  Server server(dir, nats_server(cluster, handlers({file("a", a)})));
  wait_consumer_ready(server, "fbr-a");
  NatsProbe probe(cluster.urls());
  // Add b: its consumers are created and it runs the events that list it.
  write_file(
      server.config_path(),
      config_json(nats_server(cluster, handlers({file("a", a), file("b", b)})), server.data_dir()));
  REQUIRE(::kill(server.pid(), SIGHUP) == 0);
  wait_consumer_ready(server, "fbr-b");
  const auto first = new_log_id();
  publish_event(probe, first, "a,b");
  REQUIRE(poll_until([&] { return files_in(a) == 1 && files_in(b) == 1; }, 20s));
  // Remove a: its fetch loops stop; its durable consumer stays, with the new event kept for it
  // (pending, or nak'ed back by a fetch that was under way when the loop was told to stop).
  write_file(server.config_path(),
             config_json(nats_server(cluster, handlers({file("b", b)})), server.data_dir()));
  REQUIRE(::kill(server.pid(), SIGHUP) == 0);
  REQUIRE(server.wait_for_line({"dispatcher_consumer_stopped", "consumer=fbr-a-replay"}, 10s));
  CHECK(log_lines_with(server, {"dispatcher_consumer_stopped", "handler=a "}, 2).size() == 2);
  const auto second = new_log_id();
  publish_event(probe, second, "a,b");
  const bool waiting = poll_until(
      [&] {
        const auto st = probe.consumer(kStream, "fbr-a");
        return files_in(b) == 2 && drained(probe, "fbr-b") && st &&
               st->num_pending + static_cast<std::uint64_t>(st->num_ack_pending) == 1;
      },
      20s);
  INFO(server.log_tail());
  INFO(consumer_text(probe, "fbr-a"));
  REQUIRE(waiting);
  CHECK(files_in(a) == 1);
}
