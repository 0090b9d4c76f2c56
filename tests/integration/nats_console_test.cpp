// The console's read side on the NATS journal (issue 16; server/journal/console.hpp): the backend
// in this process against a real nats-server on 127.0.0.1. Events are published into the stream
// with the headers the ingest side writes (the contract of server/journal/nats/stream.hpp); the
// backend's own dispatcher runs real handlers (a file handler, a failing exec child) for the
// delivery states, the history and the bulk replay. Waiting is always a poll with a deadline.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <spdlog/sinks/null_sink.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "server/journal/backend.hpp"
#include "server/journal/nats/console.hpp"
#include "server/support/activity.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/nats_support.hpp"

using namespace fbr::itest;
namespace fs = std::filesystem;
namespace srv = fbr::server;

namespace {

const std::string kStream = "FBR_CONSOLE";
const std::string kSubject = "fbr.console";

#define SKIP_WITHOUT_NATS()                                            \
  do {                                                                 \
    if (auto why = NatsCluster::unavailable()) return skip_test(*why); \
  } while (false)

/// A receiver's config on `cluster` with these handlers (a JSON array's items).
fbr::config::Config console_config(const NatsCluster& cluster, const std::string& handlers = {}) {
  const std::string text =
      R"({"verification_tokens": ["t"], "journal": {"backend": "nats", "nats": {"servers": )" +
      cluster.servers_json() + R"(, "stream": ")" + kStream + R"(", "subject": ")" + kSubject +
      R"("}}, "dispatch": {"concurrency": 2}, "handlers": [)" + handlers + "]}";
  auto loaded = fbr::config::parse_config(text, {}, "test");
  std::string errors;
  for (const auto& e : loaded.errors)
    errors += e + "\n";
  REQUIRE_MESSAGE(loaded.ok(), text, "\n", errors);
  return std::move(*loaded.config);
}

/// The backend, opened (its stream ensured), with its dispatcher when `dispatch`.
struct Receiver {
  fbr::config::Config config;
  srv::Logger log{fbr::config::Log{}, std::make_shared<spdlog::sinks::null_sink_mt>()};
  srv::Metrics metrics;
  std::unique_ptr<srv::Backend> backend;
  std::unique_ptr<srv::Dispatcher> dispatcher;

  explicit Receiver(fbr::config::Config c, bool dispatch = false) : config(std::move(c)) {
    backend = srv::make_backend(config);
    REQUIRE_FALSE(backend->open(log).has_value());
    REQUIRE(dispatch::poll_until([&] { return backend->journal().writable(); }, 20s));
    if (dispatch) {
      dispatcher = backend->make_dispatcher(metrics, log);
      REQUIRE_FALSE(dispatcher->start().has_value());
    }
  }
  ~Receiver() {
    if (dispatcher) dispatcher->stop();
    backend->journal().stop();
  }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  srv::EventPage events(srv::EventQuery q = {}) {
    std::string error;
    auto page = backend->query_events(q, error);
    REQUIRE_MESSAGE(error.empty(), error);
    return page;
  }
};

struct Published {
  std::string log_id, body;
};

/// An event on the events subject as ingest writes it; `more` adds or replaces headers.
Published publish_event(NatsProbe& probe, const std::string& handlers = {},
                        std::map<std::string, std::string> more = {}) {
  Published p{new_log_id(), {}};
  p.body = event_with_log_id(p.log_id);
  std::map<std::string, std::string> h{{"Fbr-Event-Key", p.log_id},
                                       {"Fbr-Log-Id", p.log_id},
                                       {"Fbr-Status", "200"},
                                       {"Fbr-Output-Count", "3"},
                                       {"Fbr-Attempt-Id", "attempt-" + p.log_id},
                                       {"Fbr-Request-Id", "request-" + p.log_id},
                                       {"Fbr-Remote-Addr", "127.0.0.1"},
                                       {"Fbr-Received-At", "2026-12-02T20:00:00.000Z"}};
  if (!handlers.empty()) h["Fbr-Handlers"] = handlers;
  for (auto& [k, v] : more)
    h[k] = v;
  probe.publish(kSubject, p.body, p.log_id, h);
  return p;
}

/// An EventQuery built field by field: Q().state("dead").handler("files").
struct Q {
  srv::EventQuery query;
  Q& state(std::string v) { return query.state = std::move(v), *this; }
  Q& status(int v) { return query.status = v, *this; }
  Q& test(bool v) { return query.test = v, *this; }
  Q& handler(std::string v) { return query.handler = std::move(v), *this; }
  Q& q(std::string v) { return query.q = std::move(v), *this; }
  Q& since(std::string v) { return query.since = std::move(v), *this; }
  Q& until(std::string v) { return query.until = std::move(v), *this; }
  operator srv::EventQuery() const { return query; }  // NOLINT: built to convert
};

std::vector<std::string> log_ids(const srv::EventPage& page) {
  std::vector<std::string> out;
  for (const auto& e : page.events)
    out.push_back(e.log_id);
  return out;
}

const srv::DeliverySummary* chip(const srv::EventSummary& e, const std::string& handler) {
  for (const auto& d : e.deliveries) {
    if (d.handler == handler) return &d;
  }
  return nullptr;
}

std::string file_handler(const std::string& name, const fs::path& dir) {
  return R"({"name": ")" + name + R"(", "type": "file", "dir": )" +
         dispatch::json_string(dir.string()) + "}";
}

/// An exec handler that always fails, dead after its one attempt.
std::string failing_handler(const std::string& name) {
  return R"({"name": ")" + name +
         R"(", "type": "exec", "command": ["/bin/sh", "-c", "echo boom >&2; exit 1"],)"
         R"( "retry": {"max_attempts": 1, "initial_backoff_ms": 100, "max_backoff_ms": 200}})";
}

}  // namespace

TEST_CASE("nats console: events newest first, keyset pages neither skip nor repeat") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster));
  NatsProbe probe(cluster.urls());
  std::vector<std::string> published;
  for (int i = 0; i < 25; ++i)
    published.push_back(publish_event(probe).log_id);
  // Other subjects share the sequences: never listed as events.
  probe.publish(kSubject + ".quarantine", "{}", "q1", {{"Fbr-Errors", "[]"}});

  srv::EventQuery q;
  q.limit = 10;
  const auto first = r.events(q);
  REQUIRE(first.events.size() == 10);
  CHECK(log_ids(first) == std::vector<std::string>(published.rbegin(), published.rbegin() + 10));
  CHECK_FALSE(first.next_cursor.empty());
  const auto& row = first.events.front();
  CHECK(row.key == published.back());
  CHECK(row.status == 200);
  CHECK(row.output_count == 3);
  CHECK(row.attempts == 1);
  CHECK(row.received_at == "2026-12-02T20:00:00.000Z");
  CHECK_FALSE(row.test.has_value());

  // Newer events between pages: they are above the first page and never shift the next ones.
  for (int i = 0; i < 5; ++i)
    publish_event(probe);
  std::vector<std::string> seen = log_ids(first);
  std::string cursor = first.next_cursor;
  int pages = 1;
  while (!cursor.empty() && pages < 10) {
    q.cursor = cursor;
    const auto page = r.events(q);
    for (const auto& id : log_ids(page))
      seen.push_back(id);
    cursor = page.next_cursor;
    ++pages;
  }
  CHECK(cursor.empty());
  CHECK(seen == std::vector<std::string>(published.rbegin(), published.rend()));

  q.cursor.clear();
  CHECK(r.events(q).events.size() == 10);
  q.limit = 500;
  CHECK(r.events(q).events.size() == 30);
}

TEST_CASE("nats console: a malformed cursor is an error naming the cursor") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster));
  NatsProbe probe(cluster.urls());
  publish_event(probe);
  for (const std::string bad : {"!!!", "YWJj" /* "abc" */, "MA" /* "0" */, "%00", "MTIzNDU;"}) {
    srv::EventQuery q;
    q.cursor = bad;
    std::string error;
    const auto page = r.backend->query_events(q, error);
    INFO(bad);
    CHECK(error.starts_with("cursor: "));
    CHECK(page.events.empty());
    error.clear();
    r.backend->query_quarantine(bad, 10, error);
    CHECK(error.starts_with("cursor: "));
  }
  // A cursor below the first sequence: an empty last page, no error.
  srv::EventQuery q;
  q.cursor = srv::NatsConsole::cursor_for(1);
  const auto page = r.events(q);
  CHECK(page.events.empty());
  CHECK(page.next_cursor.empty());
}

TEST_CASE("nats console: filters by status, test, handler, q, since and until") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster));
  NatsProbe probe(cluster.urls());
  const auto a = publish_event(probe, "files", {{"Fbr-Received-At", "2026-12-01T10:00:00.000Z"}});
  const auto b = publish_event(probe, "files,download",
                               {{"Fbr-Status", "202"},
                                {"Fbr-Test", "true"},
                                {"Fbr-Received-At", "2026-12-02T10:00:00.000Z"}});
  const auto c = publish_event(
      probe, "download", {{"Fbr-Test", "false"}, {"Fbr-Received-At", "2026-12-03T10:00:00.000Z"}});
  auto ids = [&](srv::EventQuery q) { return log_ids(r.events(std::move(q))); };
  using V = std::vector<std::string>;

  CHECK(ids(Q().status(202)) == V{b.log_id});
  CHECK(ids(Q().status(200)) == V{c.log_id, a.log_id});
  CHECK(ids(Q().test(true)) == V{b.log_id});
  CHECK(ids(Q().test(false)) == V{c.log_id, a.log_id});  // absent counts as false
  CHECK(ids(Q().handler("download")) == V{c.log_id, b.log_id});
  CHECK(ids(Q().handler("down")).empty());  // whole names only
  CHECK(ids(Q().q(a.log_id)) == V{a.log_id});
  CHECK(ids(Q().q("attempt-" + b.log_id)) == V{b.log_id});
  CHECK(ids(Q().q("request-" + c.log_id)) == V{c.log_id});
  CHECK(ids(Q().q("nothing-like-it")).empty());
  CHECK(ids(Q().since("2026-12-02T10:00:00Z")) == V{c.log_id, b.log_id});
  CHECK(ids(Q().until("2026-12-02T10:00:00.000Z")) == V{a.log_id});
  CHECK(ids(Q().since("2026-12-02").until("2026-12-03")) == V{b.log_id});
  CHECK(ids(Q().since("2026-12-02T11:00:00+01:00")) == V{c.log_id, b.log_id});
  CHECK(ids(Q().state("pending").handler("files")) == V{b.log_id, a.log_id});
  CHECK(ids(Q().state("dead")).empty());
  const auto page = r.events(Q().q(b.log_id));
  REQUIRE(page.events.size() == 1);
  CHECK(page.events[0].test == true);
  REQUIRE(page.events[0].deliveries.size() == 2);
  CHECK(page.events[0].deliveries[0].handler == "files");
  CHECK(page.events[0].deliveries[0].state == "pending");  // no consumer: nothing ran

  for (const std::string bad : {"yesterday", "2026-13-01", "2026-12-02T25:00:00Z", "2026-12-02X"}) {
    std::string error;
    r.backend->query_events(Q().since(bad), error);
    CHECK(error.starts_with("since: "));
    error.clear();
    r.backend->query_events(Q().until(bad), error);
    CHECK(error.starts_with("until: "));
  }
}

TEST_CASE("nats console: a page reads a bounded part of the stream and goes on with a cursor") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster));
  NatsProbe probe(cluster.urls());
  const auto old = publish_event(probe);
  for (std::uint64_t i = 0; i < srv::NatsConsole::kScanBudget + 100; ++i)
    probe.publish(kSubject + ".quarantine", "{}", "filler-" + std::to_string(i));
  srv::EventQuery q;
  q.q = old.log_id;
  const auto first = r.events(q);
  CHECK(first.events.empty());  // the budget was spent on other subjects' sequences
  REQUIRE_FALSE(first.next_cursor.empty());
  q.cursor = first.next_cursor;
  const auto second = r.events(q);
  CHECK(log_ids(second) == std::vector<std::string>{old.log_id});
  CHECK(second.next_cursor.empty());
  // event_detail has no budget: it finds the oldest event at once.
  std::string error;
  const auto detail = r.backend->event_detail(old.log_id, error);
  CHECK(error.empty());
  CHECK(detail.has_value());
}

TEST_CASE("nats console: delivery states, an event whole, counts and the replay of dead ones") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  Receiver r(console_config(cluster, file_handler("files", dir.path() / "out") + ", " +
                                         failing_handler("fail")),
             true);
  NatsProbe probe(cluster.urls());
  const auto event = publish_event(probe, "files,fail");
  const auto only_files = publish_event(probe, "files");

  srv::EventQuery dead;
  dead.state = "dead";
  REQUIRE(dispatch::poll_until(
      [&] {
        const auto page = r.events(dead);
        return page.events.size() == 1 &&
               chip(r.events(Q().q(only_files.log_id)).events.at(0), "files")->state == "done";
      },
      30s));
  const auto row = r.events(Q().q(event.log_id)).events.at(0);
  REQUIRE(chip(row, "files") != nullptr);
  CHECK(dispatch::poll_until(
      [&] { return chip(r.events(Q().q(event.log_id)).events.at(0), "files")->state == "done"; },
      10s));
  CHECK(chip(row, "fail")->state == "dead");
  CHECK(chip(row, "fail")->attempts == 1);
  CHECK(log_ids(r.events(Q().state("done"))) ==
        std::vector<std::string>{only_files.log_id, event.log_id});

  std::string error;
  const auto detail = r.backend->event_detail(event.log_id, error);
  REQUIRE_MESSAGE(detail.has_value(), error);
  CHECK(detail->body == event.body);
  CHECK(detail->summary.key == event.log_id);
  REQUIRE(detail->attempts.size() == 1);
  CHECK(detail->attempts[0].attempt_id == "attempt-" + event.log_id);
  CHECK(detail->attempts[0].request_id == "request-" + event.log_id);
  REQUIRE(detail->deliveries.size() == 2);
  const auto& fail = detail->deliveries[1];
  CHECK(fail.handler == "fail");
  CHECK(fail.state == "dead");
  CHECK(fail.last_error.find("exit status 1") != std::string::npos);
  REQUIRE(fail.history.size() == 1);
  CHECK(fail.history[0].attempt == 1);
  CHECK(fail.history[0].outcome == "dead");
  CHECK(fail.history[0].started_at.ends_with("Z"));
  CHECK(fail.history[0].error.find("boom") != std::string::npos);
  const auto& files = detail->deliveries[0];
  CHECK(files.state == "done");
  REQUIRE(files.history.size() == 1);
  CHECK(files.history[0].outcome == "done");
  CHECK_FALSE(files.updated_at.empty());

  const auto counts = r.backend->counts(error);
  CHECK(error.empty());
  CHECK(counts.events == 2);
  CHECK(counts.quarantined == 0);
  CHECK(counts.deliveries.at("dead") == 1);
  CHECK(counts.deliveries.at("running") == 0);

  // Bulk replay: republished for its handler, its dead letter gone.
  const auto letters = probe.messages(kStream, kSubject + ".dead.fail");
  REQUIRE(letters.size() == 1);
  CHECK(r.backend->replay_state("dead", error) == 1);
  CHECK(error.empty());
  for (const auto& m : probe.messages(kStream, kSubject + ".dead.fail"))
    CHECK(m.sequence != letters[0].sequence);  // deleted (the replay may have died again since)
  const auto replays = probe.messages(kStream, kSubject + ".replay.fail");
  REQUIRE(replays.size() == 1);
  CHECK(replays[0].data == event.body);
  CHECK(replays[0].headers.at("Fbr-Handlers") == "fail");
  CHECK(replays[0].headers.at("Fbr-Event-Key") == event.log_id);
  CHECK(replays[0].headers.count("Fbr-Error") == 0);
  // It fails again (always): a new dead letter, counted once, and replayed once more.
  REQUIRE(dispatch::poll_until(
      [&] {
        const auto now = probe.messages(kStream, kSubject + ".dead.fail");
        return now.size() == 1 && now[0].sequence != letters[0].sequence;
      },
      20s));
  CHECK(dispatch::poll_until([&] { return r.events(dead).events.size() == 1; }, 10s));
  CHECK(r.backend->counts(error).deliveries.at("dead") == 1);
  const auto again = r.backend->event_detail(event.log_id, error);
  REQUIRE(again.has_value());
  CHECK(again->deliveries[1].history.size() == 2);
  CHECK(r.backend->replay_state("dead", error) == 1);
  CHECK(probe.messages(kStream, kSubject + ".replay.fail").size() == 2);
}

TEST_CASE("nats console: a delivery running here is running, one waiting for its retry failed") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path gate = dir.path() / "gate";
  const std::string slow =
      R"({"name": "slow", "type": "exec", "command": ["/bin/sh", "-c", "while [ ! -e ')" +
      gate.string() + R"(' ]; do sleep 0.05; done"]})";
  const std::string flaky =
      R"({"name": "flaky", "type": "exec", "command": ["/bin/sh", "-c", "echo later >&2; exit 3"],)"
      R"( "retry": {"max_attempts": 5, "initial_backoff_ms": 60000, "max_backoff_ms": 60000}})";
  Receiver r(console_config(cluster, slow + ", " + flaky), true);
  NatsProbe probe(cluster.urls());
  const auto event = publish_event(probe, "slow,flaky");
  auto state_of = [&](const std::string& handler) {
    const auto page = r.events(Q().q(event.log_id));
    const auto* d = page.events.empty() ? nullptr : chip(page.events[0], handler);
    return d == nullptr ? std::string("none") : d->state;
  };
  CHECK(dispatch::poll_until([&] { return state_of("slow") == "running"; }, 20s));
  CHECK(dispatch::poll_until([&] { return state_of("flaky") == "failed"; }, 20s));
  CHECK(log_ids(r.events(Q().state("running"))) == std::vector<std::string>{event.log_id});
  CHECK(log_ids(r.events(Q().state("failed"))) == std::vector<std::string>{event.log_id});
  std::string error;
  auto counts = r.backend->counts(error);
  CHECK(counts.deliveries.at("running") == 1);
  CHECK(counts.deliveries.at("failed") == 1);  // flaky's message, waiting out its delay
  const auto detail = r.backend->event_detail(event.log_id, error);
  REQUIRE(detail.has_value());
  const auto& f = detail->deliveries.at(1);
  CHECK(f.state == "failed");
  CHECK(f.attempts == 1);
  CHECK(f.last_error.find("exit status 3") != std::string::npos);
  CHECK(f.next_attempt_at_ms > srv::unix_ms_now() + 20000);  // half the ceiling at least
  REQUIRE(f.history.size() == 1);
  CHECK(f.history[0].outcome == "retry");
  CHECK(detail->deliveries.at(0).state == "running");
  CHECK(detail->deliveries.at(0).history.empty());  // nothing ended yet

  write_file(gate, "");
  CHECK(dispatch::poll_until([&] { return state_of("slow") == "done"; }, 20s));
  counts = r.backend->counts(error);
  CHECK(counts.deliveries.at("running") == 0);
}

TEST_CASE("nats console: each delivery transition goes to the live hub as a delivery item") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  TempDir dir;
  auto live = srv::activity().subscribe();
  Receiver r(console_config(cluster, file_handler("files", dir.path() / "out") + ", " +
                                         failing_handler("fail")),
             true);
  NatsProbe probe(cluster.urls());
  const auto event = publish_event(probe, "files,fail");
  std::vector<rapidjson::Document> items;
  auto ended = [&](const std::string& handler, const std::string& state) {
    bool lost = false;
    for (auto& item : live->take(lost)) {
      if (item.type != "delivery") continue;
      rapidjson::Document doc;
      doc.Parse(item.json.c_str());
      REQUIRE_FALSE(doc.HasParseError());
      items.push_back(std::move(doc));
    }
    return std::any_of(items.begin(), items.end(), [&](const rapidjson::Document& d) {
      return std::string(d["handler"].GetString()) == handler &&
             std::string(d["state"].GetString()) == state;
    });
  };
  CHECK(dispatch::poll_until([&] { return ended("files", "done") && ended("fail", "dead"); }, 20s));
  std::vector<std::string> seen;
  for (const auto& d : items) {
    CHECK(d.MemberCount() == 6);
    CHECK(std::string(d["key"].GetString()) == event.log_id);
    CHECK(std::string(d["log_id"].GetString()) == event.log_id);
    CHECK(d["attempts"].GetInt() == 1);
    const std::string state = d["state"].GetString();
    seen.push_back(std::string(d["handler"].GetString()) + ":" + state);
    if (state == "dead")
      CHECK(std::string(d["error"].GetString()).find("boom") != std::string::npos);
    if (state == "running" || state == "done") CHECK(std::string(d["error"].GetString()).empty());
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen ==
        std::vector<std::string>{"fail:dead", "fail:running", "files:done", "files:running"});
}

TEST_CASE("nats console: a dead delivery replayed is pending until the replay runs") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster, failing_handler("fail")));  // configured, not dispatching
  NatsProbe probe(cluster.urls());
  const auto event = publish_event(probe, "fail");  // sequence 1
  probe.publish(kSubject + ".dead.fail", event.body, event.log_id + ":dead:fail",
                {{"Fbr-Event-Key", event.log_id},
                 {"Fbr-Handler", "fail"},
                 {"Fbr-Stream-Seq", "1"},
                 {"Fbr-Error", "HTTP 404"},
                 {"Fbr-Attempts", "4"}});
  auto fail = [&] { return *chip(r.events(Q().q(event.log_id)).events.at(0), "fail"); };
  CHECK(fail().state == "dead");
  CHECK(fail().attempts == 4);
  std::string error;
  const auto detail = r.backend->event_detail(event.log_id, error);
  REQUIRE(detail.has_value());
  CHECK(detail->deliveries.at(0).last_error == "HTTP 404");
  CHECK(detail->deliveries.at(0).history.empty());  // it never ran in this process

  // The event's replay (the CLI's, or the console's per-event one) keeps the dead letter: the
  // newer replay outranks it.
  CHECK(r.backend->replay(event.log_id, "fail", error) == std::vector<std::string>{"fail"});
  CHECK(fail().state == "pending");
  CHECK(r.events(Q().state("dead")).events.empty());
  CHECK(r.backend->counts(error).deliveries.at("dead") == 1);  // dead letters, counted as stored
}

TEST_CASE("nats console: replaying a state other than dead is refused or a no-op") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster));
  std::string error;
  CHECK(r.backend->replay_state("dead", error) == 0);  // nothing dead
  CHECK(error.empty());
  CHECK(r.backend->replay_state("failed", error) == 0);  // JetStream retries them itself
  CHECK(error.empty());
  for (const std::string state : {"done", "pending", "", "dead;"}) {
    error.clear();
    CHECK(r.backend->replay_state(state, error) == 0);
    CHECK(error.starts_with("state: "));
  }
  error.clear();
  CHECK_FALSE(r.backend->event_detail("no-such-event", error).has_value());
  CHECK(error.empty());
}

TEST_CASE("nats console: the quarantine newest first, one item with its body") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster));
  NatsProbe probe(cluster.urls());
  const std::string errors = R"([{"path":"/status","message":"missing"}])";
  std::vector<std::string> bodies;
  for (int i = 0; i < 3; ++i) {
    bodies.push_back("{\"not\": \"an event " + std::to_string(i) + "\"}");
    probe.publish(kSubject + ".quarantine", bodies.back(), "q" + std::to_string(i),
                  {{"Fbr-Errors", errors},
                   {"Fbr-Attempt-Id", "attempt-" + std::to_string(i)},
                   {"Fbr-Request-Id", "request-" + std::to_string(i)},
                   {"Fbr-Remote-Addr", "127.0.0.1"},
                   {"Fbr-Received-At", "2026-12-02T20:00:00.000Z"}});
  }
  const auto event = publish_event(probe);
  std::string error;
  const auto first = r.backend->query_quarantine("", 2, error);
  REQUIRE(error.empty());
  REQUIRE(first.items.size() == 2);
  CHECK(first.items[0].attempt_id == "attempt-2");
  CHECK(first.items[1].attempt_id == "attempt-1");
  CHECK(first.items[0].errors_json == errors);
  CHECK(first.items[0].bytes == bodies[2].size());
  CHECK(first.items[0].body.empty());
  CHECK(first.items[0].request_id == "request-2");
  REQUIRE_FALSE(first.next_cursor.empty());
  const auto second = r.backend->query_quarantine(first.next_cursor, 2, error);
  REQUIRE(second.items.size() == 1);
  CHECK(second.items[0].attempt_id == "attempt-0");
  CHECK(second.next_cursor.empty());

  const auto item = r.backend->quarantined(first.items[0].id, error);
  REQUIRE(item.has_value());
  CHECK(item->body == bodies[2]);
  CHECK(item->errors_json == errors);
  CHECK(item->bytes == bodies[2].size());
  const auto counts = r.backend->counts(error);
  CHECK(counts.quarantined == 3);
  CHECK(counts.events == 1);

  // Not a quarantined payload: an event's sequence, a sequence past the end, not a number.
  const auto events = r.events(Q().q(event.log_id));
  REQUIRE(events.events.size() == 1);
  for (const std::string id : {"4", "999999", "abc", "", "-1", "1;", "18446744073709551616"}) {
    error.clear();
    INFO(id);
    CHECK_FALSE(r.backend->quarantined(id, error).has_value());
    CHECK(error.empty());
  }
}

TEST_CASE("nats console: health says what is down, the calls fail cleanly, and it recovers") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  Receiver r(console_config(cluster));
  auto check = [&](const std::string& name) {
    for (const auto& c : r.backend->health()) {
      if (c.name == name) return c;
    }
    FAIL("no check ", name);
    return srv::HealthCheck{};
  };
  CHECK(check("journal_writable").ok);
  CHECK(check("nats_connected").ok);
  CHECK(check("stream_present").ok);

  cluster.kill(0);
  REQUIRE(dispatch::poll_until([&] { return !check("nats_connected").ok; }, 10s));
  CHECK_FALSE(check("stream_present").ok);
  CHECK(dispatch::poll_until([&] { return !check("journal_writable").ok; }, 10s));
  CHECK(check("nats_connected").detail.find("not connected to NATS") != std::string::npos);
  std::string error;
  CHECK(r.backend->query_events({}, error).events.empty());
  CHECK(error.find("not connected to NATS") != std::string::npos);
  error.clear();
  r.backend->counts(error);
  CHECK_FALSE(error.empty());
  error.clear();
  CHECK_FALSE(r.backend->quarantined("1", error).has_value());
  CHECK_FALSE(error.empty());

  cluster.start(0);
  CHECK(dispatch::poll_until(
      [&] {
        return check("nats_connected").ok && check("stream_present").ok &&
               check("journal_writable").ok;
      },
      20s));
  error.clear();
  r.backend->query_events({}, error);
  CHECK(error.empty());
}

TEST_CASE("nats console: stream_present is false while the stream does not exist") {
  SKIP_WITHOUT_NATS();
  NatsCluster cluster(1);
  const auto config = console_config(cluster);
  // The backend without open(): no journal has ensured the stream.
  auto backend = srv::make_backend(config);
  std::optional<srv::HealthCheck> present;
  for (const auto& c : backend->health()) {
    if (c.name == "stream_present") present = c;
  }
  REQUIRE(present.has_value());
  CHECK_FALSE(present->ok);
  CHECK(present->detail.find(kStream) != std::string::npos);
  std::string error;
  backend->query_events({}, error);
  CHECK(error.find("no such stream") != std::string::npos);
}
