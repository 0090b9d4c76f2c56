// Handler dispatch (issue 3): after the 200, every accepted event is handed to each configured
// handler whose `when` filter matches; deliveries are journal rows with a persisted state, retried
// with back-off, dead after max_attempts, replayable from the CLI, resumed after kill -9.
// Everything here is real: the binary on loopback, child processes run by the exec handler, and a
// local HTTP target (dispatch_support) for the http handler. Waiting is always a poll with a
// deadline; the only timing bounds asserted are lower bounds that follow from the retry policy and
// the latency ratio of the slow-handler test.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using namespace fbr::itest::dispatch;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

/// `path` single-quoted for /bin/sh.
std::string shq(const fs::path& path) {
  std::string out = "'";
  for (const char c : path.string()) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

/// in-progress.json (status 202, no outputs) with Meta.Logs[0].ID replaced by `log_id`.
std::string in_progress_with_log_id(const std::string& log_id) {
  static constexpr std::string_view kFixtureId = "0b6c1d52-3f2a-4f57-9a43-5d0f1c6a9e11";
  std::string body = fixture("in-progress.json");
  const auto at = body.find(kFixtureId);
  REQUIRE_MESSAGE(at != std::string::npos, "in-progress.json lacks its Log ID");
  body.replace(at, kFixtureId.size(), log_id);
  return body;
}

/// POSTs an event and checks the 200 (and whether it was a duplicate).
void post_ok(const Server& server, const std::string& body, const std::string& log_id,
             bool duplicate = false) {
  const auto r = http(server.port(), post_event(body));
  REQUIRE_MESSAGE(r.status == 200, "POST answered ", r.status, " ", r.body);
  const auto doc = parse_json(r.body);
  CHECK(json_str(doc, "/logId") == log_id);
  CHECK(json_raw(doc, "/duplicate") == (duplicate ? "true" : "false"));
}

std::string exec_handler(const std::string& name, const fs::path& script,
                         const std::string& more = {}) {
  return R"({"name": )" + json_string(name) + R"(, "type": "exec", "command": ["/bin/sh", )" +
         json_string(script.string()) + "]" + (more.empty() ? "" : ", " + more) + "}";
}

std::string http_handler(const std::string& name, const std::string& url,
                         const std::string& more = {}) {
  return R"({"name": )" + json_string(name) + R"(, "type": "http", "url": )" + json_string(url) +
         (more.empty() ? "" : ", " + more) + "}";
}

std::string file_dir_handler(const std::string& name, const fs::path& dir,
                             const std::string& more = {}) {
  return R"({"name": )" + json_string(name) + R"(, "type": "file", "dir": )" +
         json_string(dir.string()) + (more.empty() ? "" : ", " + more) + "}";
}

std::string file_path_handler(const std::string& name, const fs::path& path,
                              const std::string& more = {}) {
  return R"({"name": )" + json_string(name) + R"(, "type": "file", "path": )" +
         json_string(path.string()) + (more.empty() ? "" : ", " + more) + "}";
}

std::string handlers(const std::vector<std::string>& entries) {
  std::string out = R"("handlers": [)";
  for (std::size_t i = 0; i < entries.size(); ++i)
    out += (i == 0 ? "\n    " : ",\n    ") + entries[i];
  return out + "\n  ]";
}

std::string retry(int max_attempts, int initial_ms, int max_ms) {
  return R"("retry": {"max_attempts": )" + std::to_string(max_attempts) +
         R"(, "initial_backoff_ms": )" + std::to_string(initial_ms) + R"(, "max_backoff_ms": )" +
         std::to_string(max_ms) + "}";
}

ServerConfig with_members(std::string members) {
  ServerConfig config;
  config.extra_members = std::move(members);
  return config;
}

/// The regular files in `dir` (names), empty when it does not exist.
std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    out.insert(entry.path().filename());
  return out;
}

/// `delivery` log lines (one per attempt) of this event and handler, once at least `expected`
/// are there (or after 5 s).
std::vector<std::string> attempt_lines(const Server& server, const std::string& log_id,
                                       const std::string& handler, std::size_t expected = 1) {
  return log_lines_with(server, {" delivery log_id=" + log_id + " ", " handler=" + handler + " "},
                        expected);
}

std::int64_t number_field(const std::string& line, std::string_view key) {
  const auto value = log_field(line, key);
  REQUIRE_MESSAGE(value.has_value(), "no ", key, "= in: ", line);
  return static_cast<std::int64_t>(std::stod(*value));
}

/// The `deliveries` entry of `handler` for the event with this Log ID in `events --json`.
const rapidjson::Value* cli_delivery(const rapidjson::Document& events, const std::string& log_id,
                                     const std::string& handler) {
  for (const auto& event : events.GetArray()) {
    if (json_str(event, "/logId") != log_id) continue;
    if (!event.HasMember("deliveries") || !event["deliveries"].IsArray()) return nullptr;
    for (const auto& d : event["deliveries"].GetArray()) {
      if (json_str(d, "/handler") == handler) return &d;
    }
  }
  return nullptr;
}

std::string environment_value(const std::vector<std::string>& env_lines, const std::string& name) {
  for (const auto& line : env_lines) {
    if (line.rfind(name + "=", 0) == 0) return line.substr(name.size() + 1);
  }
  return "<unset>";
}

std::string octal(unsigned mode) {
  std::ostringstream out;
  out << std::oct << mode;
  return out.str();
}

/// What a failed assertion shows (through INFO): the server's log tail and its delivery rows.
/// doctest prints the INFO context with every MESSAGE too, so REPORT mutes it meanwhile.
class Context {
 public:
  explicit Context(const Server& server, std::size_t lines = 60) : server_(server), lines_(lines) {}
  mutable bool muted = false;

  friend std::ostream& operator<<(std::ostream& out, const Context& c) {
    if (c.muted) return out << "(server context: shown with failures only)";
    return out << "server log tail:\n"
               << c.server_.log_tail(c.lines_) << "deliveries:\n"
               << describe_deliveries(c.server_);
  }

 private:
  const Server& server_;
  std::size_t lines_;
};

// MESSAGE without the (long) failure context.
#define REPORT(context, ...) \
  do {                       \
    (context).muted = true;  \
    MESSAGE(__VA_ARGS__);    \
    (context).muted = false; \
  } while (false)

/// Sets an environment variable for the test (and the server it starts), unsets it at the end.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    ::setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_.c_str()); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("dispatch: a matching handler runs once per event and a non-matching one never") {
  TempDir dir;
  HttpTarget target;
  const fs::path root = dir.path();
  const fs::path files = root / "files";
  const fs::path never_files = root / "never-files";
  const fs::path runs = root / "runs";
  fs::create_directories(runs);
  write_script(root / "progress.sh", "d=" + shq(runs) +
                                         "\n"
                                         "env | grep '^FBR_' | sort > \"$d/$FBR_LOG_ID.env\"\n"
                                         "cat > \"$d/$FBR_LOG_ID.stdin\"\n"
                                         "cp \"$FBR_EVENT_FILE\" \"$d/$FBR_LOG_ID.eventfile\"\n"
                                         "echo \"$FBR_LOG_ID\" >> \"$d/progress.runs\"");
  write_script(root / "never.sh", "touch " + shq(root / "never.ran"));

  const std::string source = "7ce6f387-c33c-417d-8682-81e83628cbd9";  // the fixtures' Source.ID
  const std::string destination = "af394f14-b34a-464f-8d24-895f370af4c9";
  Server server(
      dir, with_members(handlers({
               // Match the complete (200, Test: true, Patient + Encounter) event only.
               http_handler("match-http", target.url("/match"),
                            R"("when": {"status": [200], "test": true})"),
               file_dir_handler("match-file", files,
                                R"("when": {"resource_types": ["Patient"], "source_id": ")" +
                                    source + R"(", "destination_id": ")" + destination + R"("})"),
               // Match the in-progress (202) event only.
               exec_handler("progress-exec", root / "progress.sh", R"("when": {"status": [202]})"),
               // Match neither.
               http_handler("never-test-false", target.url("/never"), R"("when": {"test": false})"),
               file_dir_handler("never-type", never_files,
                                R"("when": {"resource_types": ["Observation"]})"),
               exec_handler("never-source", root / "never.sh",
                            R"("when": {"source_id": "00000000-0000-4000-8000-000000000000"})"),
               exec_handler("never-destination", root / "never.sh",
                            R"("when": {"status": [200], "destination_id": "nobody"})"),
           })));
  const Context context(server);
  INFO(context);

  const std::string id_a = new_log_id();
  const std::string id_b = new_log_id();
  const std::string body_a = event_with_log_id(id_a);
  const std::string body_b = in_progress_with_log_id(id_b);
  post_ok(server, body_a, id_a);
  post_ok(server, body_b, id_b);

  REQUIRE(wait_for_state(server, id_a, "match-http", "done", 15s));
  REQUIRE(wait_for_state(server, id_a, "match-file", "done", 15s));
  REQUIRE(wait_for_state(server, id_b, "progress-exec", "done", 15s));

  // A second after: nothing ran twice, nothing that does not match ran at all.
  const auto misbehaving = [&] {
    return target.count("/match") > 1 || target.count("/never") > 0 ||
           fs::exists(root / "never.ran") || !files_in(never_files).empty() ||
           files_in(files).size() > 1 || file_lines(runs / "progress.runs").size() > 1;
  };
  CHECK_FALSE(poll_until(misbehaving, 1000ms));

  CHECK(target.count("/match") == 1);
  CHECK(target.count("/never") == 0);
  CHECK(target.count() == 1);
  const auto match_requests = target.requests("/match");
  REQUIRE(match_requests.size() == 1);
  CHECK(match_requests[0].method == "POST");
  CHECK(match_requests[0].body == body_a);

  CHECK(files_in(files) == std::set<std::string>{id_a + ".json"});
  CHECK(files_in(never_files).empty());
  CHECK_FALSE(fs::exists(root / "never.ran"));
  CHECK(file_lines(runs / "progress.runs") == std::vector<std::string>{id_b});

  // Only the matching handlers got delivery rows, each done after one attempt.
  const auto rows_a = deliveries_of(server, id_a);
  REQUIRE(rows_a.size() == 2);
  CHECK(rows_a[0].handler == "match-file");
  CHECK(rows_a[1].handler == "match-http");
  const auto rows_b = deliveries_of(server, id_b);
  REQUIRE(rows_b.size() == 1);
  CHECK(rows_b[0].handler == "progress-exec");
  for (const auto& row : {rows_a[0], rows_a[1], rows_b[0]}) {
    CHECK_MESSAGE(row.state == "done", row.handler);
    CHECK_MESSAGE(row.attempts == 1, row.handler);
  }

  // The exec handler's contract: the raw event on stdin and in FBR_EVENT_FILE, and its env.
  CHECK(read_file(runs / (id_b + ".stdin")) == body_b);
  CHECK(read_file(runs / (id_b + ".eventfile")) == body_b);
  const auto env = file_lines(runs / (id_b + ".env"));
  CHECK(environment_value(env, "FBR_LOG_ID") == id_b);
  CHECK(environment_value(env, "FBR_STATUS") == "202");
  CHECK(environment_value(env, "FBR_HANDLER") == "progress-exec");
  CHECK(environment_value(env, "FBR_DELIVERY_ATTEMPT") == "1");
  {
    const Journal journal(server.journal_path());
    const auto rows = journal.query("SELECT attempt_id FROM events WHERE log_id = ?", {id_b});
    REQUIRE(rows.size() == 1);
    CHECK(environment_value(env, "FBR_ATTEMPT_ID") == rows[0].at(0).value_or(""));
  }
  const std::string event_file = environment_value(env, "FBR_EVENT_FILE");
  CHECK(event_file != "<unset>");
  CHECK(environment_value(env, "FBR_VERIFICATION_TOKEN") == "<unset>");
  WARN_MESSAGE(!fs::exists(event_file), "FBR_EVENT_FILE left behind: ", event_file);

  // One log line per attempt, with log_id, attempt_id, handler, attempt, outcome, duration.
  const auto lines = attempt_lines(server, id_a, "match-http");
  REQUIRE(lines.size() == 1);
  CHECK(log_field(lines[0], "attempt") == "1");
  CHECK(log_field(lines[0], "outcome") == "done");
  CHECK(log_field(lines[0], "attempt_id").has_value());
  CHECK(log_field(lines[0], "duration_ms").has_value());
  CHECK(log_lines_with(server, {" delivery log_id=", "never-"}).empty());
}

TEST_CASE("dispatch: a duplicate Log ID does not run handlers again") {
  TempDir dir;
  HttpTarget target;
  const fs::path runs = dir.path() / "exec.runs";
  write_script(dir.path() / "count.sh", "echo \"$FBR_LOG_ID\" >> " + shq(runs));
  Server server(dir, with_members(handlers({
                         http_handler("hook", target.url("/dup")),
                         exec_handler("count", dir.path() / "count.sh"),
                     })));
  const Context context(server);
  INFO(context);

  const std::string id = new_log_id();
  const std::string body = event_with_log_id(id);
  post_ok(server, body, id);
  post_ok(server, body, id, /*duplicate=*/true);  // most likely before the handlers ran
  REQUIRE(wait_for_state(server, id, "hook", "done", 15s));
  REQUIRE(wait_for_state(server, id, "count", "done", 15s));
  post_ok(server, body, id, /*duplicate=*/true);  // and after

  // For 1.5 s more, neither handler ever runs a second time.
  std::size_t most_requests = 0;
  std::size_t most_runs = 0;
  poll_until(
      [&] {
        most_requests = std::max(most_requests, target.count());
        most_runs = std::max(most_runs, file_lines(runs).size());
        return false;
      },
      1500ms);
  CHECK(most_requests == 1);
  CHECK(most_runs == 1);
  CHECK(target.count() == 1);
  CHECK(file_lines(runs) == std::vector<std::string>{id});

  const auto rows = deliveries_of(server, id);
  REQUIRE(rows.size() == 2);
  for (const auto& row : rows) {
    CHECK_MESSAGE(row.state == "done", row.handler);
    CHECK_MESSAGE(row.attempts == 1, row.handler);
  }
  {
    const Journal journal(server.journal_path());
    CHECK(journal.count("events", "log_id = ?", {id}) == 1);
    CHECK(journal.count("event_attempts") == 3);  // every POST is recorded, only the first dispatched
  }
  CHECK(attempt_lines(server, id, "hook").size() == 1);
  CHECK(attempt_lines(server, id, "count").size() == 1);
}

TEST_CASE("dispatch: a failing exec handler is retried with growing delays then dead") {
  TempDir dir;
  const fs::path starts = dir.path() / "starts";
  write_script(dir.path() / "fail.sh", "date +%s%N >> " + shq(starts) +
                                           "\n"
                                           "echo \"boom on attempt $FBR_DELIVERY_ATTEMPT\" >&2\n"
                                           "exit 1");
  // The handler's own policy overrides the top-level one (which would take seconds).
  Server server(dir, with_members(retry(10, 5000, 10000) + ",\n  " +
                                  handlers({exec_handler("fail-exec", dir.path() / "fail.sh",
                                                         retry(3, 200, 2000))})));
  const Context context(server);
  INFO(context);

  const std::string id = new_log_id();
  post_ok(server, event_with_log_id(id), id);
  std::optional<DeliveryInfo> last;
  REQUIRE(wait_for_state(server, id, "fail-exec", "dead", 20s, &last));
  CHECK(last->attempts == 3);
  CHECK_MESSAGE(last->last_error.find("exit status 1") != std::string::npos, last->last_error);

  // No fourth attempt (it would come within 0.8 s).
  CHECK_FALSE(poll_until([&] { return file_lines(starts).size() > 3; }, 1000ms));
  const auto lines = file_lines(starts);
  REQUIRE(lines.size() == 3);
  std::vector<double> gaps;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    gaps.push_back(static_cast<double>(std::stoll(lines[i]) - std::stoll(lines[i - 1])) / 1e6);
  }
  REPORT(context, "exec attempt gaps (ms): ", gaps[0], ", ", gaps[1], " (ceilings 200, 400)");
  // After attempt k the delay is in [ceiling/2, ceiling), ceiling = 200 * 2^(k-1): the lower
  // bound doubles. (1 ms of slack: next_attempt_at is stored in whole milliseconds.)
  CHECK(gaps[0] >= 100 - 2);
  CHECK(gaps[1] >= 200 - 2);

  const auto scheduled =
      log_lines_with(server, {"delivery_retry_scheduled", "handler=fail-exec"}, 2);
  REQUIRE(scheduled.size() == 2);
  const auto next1 = number_field(scheduled[0], "next_in_ms");
  const auto next2 = number_field(scheduled[1], "next_in_ms");
  REPORT(context, "scheduled delays (ms): ", next1, ", ", next2);
  CHECK(next1 >= 100 - 50);
  CHECK(next1 <= 200);
  CHECK(next2 >= 200 - 50);
  CHECK(next2 <= 400);
  CHECK(log_lines_with(server, {"delivery_dead", "handler=fail-exec"}, 1).size() == 1);
  // PRODUCT.md: every log line about an event carries log_id and attempt_id.
  for (const auto& line : log_lines_with(server, {"log_id=" + id})) {
    CHECK_MESSAGE(log_field(line, "attempt_id").has_value(), "no attempt_id in: ", line);
  }
  const auto attempts = attempt_lines(server, id, "fail-exec", 3);
  REQUIRE(attempts.size() == 3);
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    CHECK(log_field(attempts[i], "attempt") == std::to_string(i + 1));
    CHECK(log_field(attempts[i], "outcome") != "done");
  }

  // The CLI shows the dead delivery with its attempts and last error.
  const auto events = events_json(server);
  const auto* d = cli_delivery(events, id, "fail-exec");
  REQUIRE(d != nullptr);
  CHECK(json_str(*d, "/state") == "dead");
  CHECK(json_raw(*d, "/attempts") == "3");
  CHECK(json_str(*d, "/lastError").find("exit status 1") != std::string::npos);
  CHECK(d->HasMember("nextAttemptAt"));
  CHECK(d->HasMember("updatedAt"));
}

TEST_CASE("dispatch: an http handler whose target answers 500 is retried then dead") {
  TempDir dir;
  HttpTarget target;
  target.set_status("/fail", 500);
  Server server(
      dir, with_members(handlers({http_handler("fail-http", target.url("/fail"),
                                               R"("timeout_ms": 5000, )" + retry(3, 200, 2000))})));
  const Context context(server);
  INFO(context);

  const std::string id = new_log_id();
  post_ok(server, event_with_log_id(id), id);
  std::optional<DeliveryInfo> last;
  REQUIRE(wait_for_state(server, id, "fail-http", "dead", 20s, &last));
  CHECK(last->attempts == 3);
  CHECK_MESSAGE(last->last_error.find("500") != std::string::npos, last->last_error);

  CHECK_FALSE(poll_until([&] { return target.count("/fail") > 3; }, 1000ms));
  const auto requests = target.requests("/fail");
  REQUIRE(requests.size() == 3);
  std::vector<double> gaps;
  for (std::size_t i = 1; i < requests.size(); ++i) {
    gaps.push_back(
        std::chrono::duration<double, std::milli>(requests[i].arrived - requests[i - 1].arrived)
            .count());
  }
  REPORT(context, "http attempt gaps (ms): ", gaps[0], ", ", gaps[1], " (ceilings 200, 400)");
  CHECK(gaps[0] >= 100 - 2);
  CHECK(gaps[1] >= 200 - 2);
  CHECK(log_lines_with(server, {"delivery_retry_scheduled", "handler=fail-http"}, 2).size() == 2);
  CHECK(log_lines_with(server, {"delivery_dead", "handler=fail-http"}, 1).size() == 1);
}

TEST_CASE("dispatch: an http 503 with Retry-After is retried after that long") {
  TempDir dir;
  HttpTarget target;
  target.set_status("/busy", 503, /*retry_after_s=*/1);
  // Back-off alone would retry after 10-20 ms; Retry-After: 1 says a second.
  Server server(
      dir, with_members(handlers({http_handler("busy", target.url("/busy"), retry(2, 20, 5000))})));
  const Context context(server);
  INFO(context);

  const std::string id = new_log_id();
  post_ok(server, event_with_log_id(id), id);
  std::optional<DeliveryInfo> last;
  REQUIRE(wait_for_state(server, id, "busy", "dead", 20s, &last));
  CHECK(last->attempts == 2);
  const auto requests = target.requests("/busy");
  REQUIRE(requests.size() == 2);
  const double gap =
      std::chrono::duration<double, std::milli>(requests[1].arrived - requests[0].arrived).count();
  REPORT(context, "Retry-After: 1 → second attempt after ", gap, " ms");
  CHECK(gap >= 1000 - 2);
}

TEST_CASE("dispatch: replay brings a dead delivery to done once the target works") {
  TempDir dir;
  HttpTarget target;
  target.set_status("/hook", 404);  // permanent: dead at once
  const fs::path flag = dir.path() / "flag";
  const fs::path runs = dir.path() / "script.runs";
  write_script(dir.path() / "script.sh",
               "[ -f " + shq(flag) + " ] || { echo 'flag missing' >&2; exit 3; }\n" +
                   "echo \"$FBR_LOG_ID $FBR_DELIVERY_ATTEMPT\" >> " + shq(runs));
  Server server(dir, with_members(handlers({
                         http_handler("hook", target.url("/hook"), retry(3, 50, 100)),
                         exec_handler("script", dir.path() / "script.sh", retry(2, 50, 100)),
                     })));
  const Context context(server);
  INFO(context);
  const std::string config = server.config_path().string();

  const std::string id = new_log_id();
  const std::string body = event_with_log_id(id);
  post_ok(server, body, id);
  std::optional<DeliveryInfo> hook;
  std::optional<DeliveryInfo> script;
  REQUIRE(wait_for_state(server, id, "hook", "dead", 15s, &hook));
  REQUIRE(wait_for_state(server, id, "script", "dead", 15s, &script));
  CHECK(hook->attempts == 1);  // a 404 is not retried
  CHECK_MESSAGE(hook->last_error.find("404") != std::string::npos, hook->last_error);
  CHECK(script->attempts == 2);
  CHECK_MESSAGE(script->last_error.find("exit status 3") != std::string::npos, script->last_error);
  CHECK(target.count("/hook") == 1);

  // The target works now: replay one handler while the server runs.
  target.set_status("/hook", 200);
  auto r = run_cli({"replay", "--config", config, "--log-id", id, "--handler", "hook"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output());
  CHECK(r.out.find("hook") != std::string::npos);
  auto replayed_at = Clock::now();
  REQUIRE(wait_for_state(server, id, "hook", "done", 15s, &hook));
  REPORT(context, "replay --handler picked up and done after ",
         std::chrono::duration<double, std::milli>(Clock::now() - replayed_at).count(), " ms");
  CHECK(hook->attempts == 1);
  CHECK(hook->last_error.empty());
  CHECK(target.count("/hook") == 2);
  CHECK(target.requests("/hook").back().body == body);
  CHECK(delivery_of(server, id, "script")->state == "dead");  // not replayed

  // The script's precondition holds now: replay every handler of the event.
  write_file(flag, "");
  r = run_cli({"replay", "--config", config, "--log-id", id});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output());
  CHECK(r.out.find("script") != std::string::npos);
  replayed_at = Clock::now();
  REQUIRE(wait_for_state(server, id, "script", "done", 15s, &script));
  REPORT(context, "replay (all handlers) done after ",
         std::chrono::duration<double, std::milli>(Clock::now() - replayed_at).count(), " ms");
  CHECK(script->attempts == 1);
  CHECK(script->last_error.empty());
  CHECK(file_lines(runs) == std::vector<std::string>{id + " 1"});
  // Every handler of the event ran again, hook included (at least once per replay).
  REQUIRE(poll_until([&] { return target.count("/hook") >= 3; }, 15s));
  REQUIRE(wait_for_state(server, id, "hook", "done", 15s));
  CHECK(target.count("/hook") == 3);

  const auto events = events_json(server);
  for (const char* name : {"hook", "script"}) {
    const auto* d = cli_delivery(events, id, name);
    REQUIRE_MESSAGE(d != nullptr, name);
    CHECK_MESSAGE(json_str(*d, "/state") == "done", name);
    CHECK_MESSAGE(json_raw(*d, "/attempts") == "1", name);
  }

  // Mistakes are errors, not silent no-ops.
  r = run_cli({"replay", "--config", config, "--log-id", new_log_id()});
  CHECK_MESSAGE(r.exit_code != 0, r.output());
  r = run_cli({"replay", "--config", config, "--log-id", id, "--handler", "no-such-handler"});
  CHECK_MESSAGE(r.exit_code != 0, r.output());
  CHECK(r.output().find("no-such-handler") != std::string::npos);
}

TEST_CASE("dispatch: an exec that hangs is killed at its timeout its whole process group") {
  TempDir dir;
  const fs::path root = dir.path();
  // `hang` dies of the SIGTERM; `stubborn` ignores it (and so does its sleep): only a SIGKILL of
  // the group ends it.
  // Each script writes its sleep's process group (field 5 of /proc/PID/stat) before the sleep's
  // pid: the test reads it from there, so a sleep already killed by the timeout cannot hide it.
  auto script = [&](const std::string& name, const std::string& prologue) {
    write_script(root / (name + ".sh"),
                 prologue + "echo $$ > " + shq(root / (name + ".sh.pid")) +
                     "\nsleep 60 &\np=$!\nawk '{print $5}' /proc/$p/stat > " +
                     shq(root / (name + ".sleep.pgid")) + "\necho $p > " +
                     shq(root / (name + ".sleep.pid")) + "\nwait");
  };
  script("hang", "");
  script("stubborn", "trap '' TERM\n");
  const std::string options = R"("timeout_ms": 500, )" + retry(1, 100, 100);
  Server server(dir, with_members(handlers({
                         exec_handler("hang", root / "hang.sh", options),
                         exec_handler("stubborn", root / "stubborn.sh", options),
                     })));
  const Context context(server);
  INFO(context);

  const std::string id = new_log_id();
  const auto posted = Clock::now();
  post_ok(server, event_with_log_id(id), id);

  // While they run: each sleep is in the process group its shell leads.
  std::map<std::string, std::pair<pid_t, pid_t>> pids;  // name -> (shell, sleep)
  for (const std::string name : {"hang", "stubborn"}) {
    const fs::path sh_file = root / (name + ".sh.pid");
    const fs::path sleep_file = root / (name + ".sleep.pid");
    REQUIRE_MESSAGE(poll_until([&] { return file_lines(sleep_file).size() == 1; }, 15s, 5ms), name,
                    " never started");
    REQUIRE(file_lines(sh_file).size() == 1);
    const pid_t sh = std::stoi(file_lines(sh_file)[0]);
    const pid_t sleeper = std::stoi(file_lines(sleep_file)[0]);
    pids[name] = {sh, sleeper};
    const auto group_lines = file_lines(root / (name + ".sleep.pgid"));
    REQUIRE_MESSAGE(group_lines.size() == 1, name, ": the script did not record its process group");
    const pid_t group = std::stoi(group_lines[0]);
    CHECK_MESSAGE(group == sh, name, ": the command does not lead its own process group");
    CHECK_MESSAGE(group != ::getpgid(0), name, ": the command is in the test's process group");
    CHECK_MESSAGE(group != server.pid(), name, ": the command is in the server's process group");
  }

  std::optional<DeliveryInfo> hang;
  std::optional<DeliveryInfo> stubborn;
  REQUIRE(wait_for_state(server, id, "hang", "dead", 20s, &hang));
  const double hang_seen_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - posted).count();
  REQUIRE(wait_for_state(server, id, "stubborn", "dead", 20s, &stubborn));
  const double stubborn_seen_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - posted).count();
  CHECK_MESSAGE(hang->last_error.find("timeout") != std::string::npos, hang->last_error);
  CHECK_MESSAGE(stubborn->last_error.find("timeout") != std::string::npos, stubborn->last_error);
  CHECK(hang->attempts == 1);
  CHECK(stubborn->attempts == 1);

  const auto hang_lines = attempt_lines(server, id, "hang");
  const auto stubborn_lines = attempt_lines(server, id, "stubborn");
  REQUIRE(hang_lines.size() == 1);
  REQUIRE(stubborn_lines.size() == 1);
  const auto hang_ms = number_field(hang_lines[0], "duration_ms");
  const auto stubborn_ms = number_field(stubborn_lines[0], "duration_ms");
  REPORT(context, "timeout 500 ms: hang took ", hang_ms, " ms (dead seen after ", hang_seen_ms,
         " ms), stubborn (ignores SIGTERM) took ", stubborn_ms, " ms (dead seen after ",
         stubborn_seen_ms, " ms)");
  CHECK(hang_ms >= 500 - 1);
  CHECK(hang_ms < 5000);  // nowhere near the 60 s it asked for
  CHECK(stubborn_ms >= 500 - 1);
  CHECK(stubborn_ms < 10000);

  // Nothing of either process group survives.
  for (const auto& [name, pair] : pids) {
    const pid_t sh = pair.first;
    const pid_t sleeper = pair.second;
    CHECK_MESSAGE(poll_until([&] { return !process_alive(sleeper); }, 3s), name,
                  ": its sleep (pid ", sleeper, ") survived the timeout");
    CHECK_MESSAGE(poll_until([&] { return !process_alive(sh); }, 3s), name, ": its shell (pid ", sh,
                  ") survived the timeout");
    CHECK_MESSAGE(live_processes_in_group(sh).empty(), name, ": processes left in group ", sh);
  }
}

TEST_CASE("dispatch: kill -9 while deliveries run restart: every delivery ends done once") {
  TempDir dir;
  const fs::path root = dir.path();
  const fs::path started = root / "started";
  const fs::path ndjson = root / "events.ndjson";
  fs::create_directories(started);
  write_script(root / "slow.sh", "touch " + shq(started) +
                                     "/\"$FBR_LOG_ID.$$\"\n"
                                     "sleep 3\n"
                                     "echo \"$FBR_LOG_ID\" >> " +
                                     shq(root / "slow.done"));
  Server server(dir, with_members(R"("dispatch": {"concurrency": 8},)"
                                  "\n  " +
                                  handlers({
                                      exec_handler("slow", root / "slow.sh",
                                                   R"("timeout_ms": 30000, )" + retry(5, 100, 500)),
                                      file_path_handler("ndjson", ndjson, retry(5, 100, 500)),
                                  })));
  const Context context(server, 80);
  INFO(context);

  constexpr int kEvents = 4;
  std::vector<std::string> ids;
  for (int i = 0; i < kEvents; ++i) {
    ids.push_back(new_log_id());
    post_ok(server, event_with_log_id(ids.back()), ids.back());
  }
  // Wait until the slow handler is running (persisted `running`, and its process started).
  REQUIRE(poll_until(
      [&] {
        if (files_in(started).empty()) return false;
        const Journal journal(server.journal_path());
        return journal.count("deliveries", "handler = 'slow' AND state = 'running'") > 0;
      },
      15s));
  std::string states_at_kill;
  {
    const Journal journal(server.journal_path());
    for (const auto& row :
         journal.query("SELECT handler, state, COUNT(*) FROM deliveries GROUP BY 1, 2")) {
      states_at_kill += row.at(0).value_or("") + " " + row.at(1).value_or("") + ": " +
                        row.at(2).value_or("") + "; ";
    }
  }
  server.kill9();
  REPORT(context, "delivery states at kill -9: ", states_at_kill);
  CHECK(states_at_kill.find("slow running") != std::string::npos);

  server.start();  // same config, same data dir
  REQUIRE(wait_all_done(server, 2 * kEvents, 40s));

  // The NDJSON file has each event exactly once.
  const auto lines = file_lines(ndjson);
  std::map<std::string, int> per_id;
  for (const auto& line : lines) {
    const auto doc = parse_json(line);
    REQUIRE_MESSAGE(!doc.HasParseError(), "not JSON: ", line);
    ++per_id[json_str(doc, "/Meta/Logs/0/ID")];
  }
  CHECK(lines.size() == static_cast<std::size_t>(kEvents));
  CHECK(per_id.size() == static_cast<std::size_t>(kEvents));
  for (const auto& id : ids)
    CHECK_MESSAGE(per_id[id] == 1, id);

  // The slow handler completed every event at least once (its interrupted runs were redone).
  std::map<std::string, int> slow_done;
  for (const auto& id : file_lines(root / "slow.done"))
    ++slow_done[id];
  for (const auto& id : ids)
    CHECK_MESSAGE(slow_done[id] >= 1, id);
  REPORT(context, "slow handler processes started across both runs: ", files_in(started).size(),
         " for ", kEvents, " events");

  // Delivering an event to the NDJSON file again (replay) does not add a second line.
  const auto before = attempt_lines(server, ids[0], "ndjson").size();
  const auto r = run_cli({"replay", "--config", server.config_path().string(), "--log-id", ids[0],
                          "--handler", "ndjson"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output());
  REQUIRE(poll_until(
      [&] {
        return attempt_lines(server, ids[0], "ndjson").size() > before &&
               delivery_of(server, ids[0], "ndjson")->state == "done";
      },
      15s));
  CHECK(file_lines(ndjson).size() == static_cast<std::size_t>(kEvents));
}

TEST_CASE("dispatch: a slow handler does not slow the 200s") {
  constexpr int kConcurrency = 8;
  constexpr int kWarmup = 20;
  constexpr int kRequests = 200;
  HttpTarget target;
  target.set_delay(5s);
  TempDir plain_dir;
  TempDir slow_dir;
  Server plain(plain_dir);
  Server slow(
      slow_dir,
      with_members(R"("dispatch": {"concurrency": )" + std::to_string(kConcurrency) + "},\n  " +
                   handlers({http_handler("slow", target.url("/slow"),
                                          R"("timeout_ms": 15000, )" + retry(2, 60000, 60000))})));
  const Context context(slow, 40);
  INFO(context);

  HttpConnection to_plain(plain.port());
  HttpConnection to_slow(slow.port());
  const auto timed_post = [](HttpConnection& connection) {
    const std::string id = new_log_id();
    const std::string body = event_with_log_id(id);
    const auto t0 = Clock::now();
    const auto r = connection.send(post_event(body), 30s);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    REQUIRE_MESSAGE(r.status == 200, r.status, " ", r.body);
    return ms;
  };
  for (int i = 0; i < kWarmup; ++i) {
    timed_post(to_plain);
    timed_post(to_slow);
  }
  // Every worker is now stuck on the 5 s target: the measurement runs with the handler saturated.
  REQUIRE_MESSAGE(poll_until([&] { return target.in_flight() == kConcurrency; }, 15s),
                  "in flight at the target: ", target.in_flight());

  // The two servers alternate, so that the machine's load drifts the same for both.
  std::vector<double> plain_ms;
  std::vector<double> slow_ms;
  for (int i = 0; i < kRequests; ++i) {
    plain_ms.push_back(timed_post(to_plain));
    slow_ms.push_back(timed_post(to_slow));
  }
  const int in_flight_after = target.in_flight();
  const int max_in_flight = target.max_in_flight();
  std::string running;
  {
    const Journal journal(slow.journal_path());
    running = std::to_string(journal.count("deliveries", "state = 'running'")) + " running, " +
              std::to_string(journal.count("deliveries", "state = 'pending'")) + " pending";
  }
  target.stop();  // the slow deliveries fail at once; the servers stop quickly

  const double plain_p50 = percentile(plain_ms, 50);
  const double plain_p90 = percentile(plain_ms, 90);
  const double plain_p99 = percentile(plain_ms, 99);
  const double slow_p50 = percentile(slow_ms, 50);
  const double slow_p90 = percentile(slow_ms, 90);
  const double slow_p99 = percentile(slow_ms, 99);
  REPORT(context, "ingest latency over ", kRequests,
         " sequential keep-alive POSTs (ms): no handler p50 ", plain_p50, " p90 ", plain_p90,
         " p99 ", plain_p99, " max ", *std::ranges::max_element(plain_ms),
         "; with a 5 s http handler (concurrency ", kConcurrency, ") p50 ", slow_p50, " p90 ",
         slow_p90, " p99 ", slow_p99, " max ", *std::ranges::max_element(slow_ms), "; ratio p90 ",
         slow_p90 / plain_p90);
  REPORT(context, "slow target: ", in_flight_after, " requests in flight at the end, at most ",
         max_in_flight, " at once; deliveries: ", running);
  CHECK(slow_p90 <= 2 * plain_p90 + 5);
  CHECK(max_in_flight <= kConcurrency);  // dispatch.concurrency bounds the deliveries at once
}

TEST_CASE("dispatch: the http handler sends configured headers one from an env variable") {
  TempDir dir;
  HttpTarget target;
  const std::string secret = "s3cret-" + new_log_id();
  // The harness passes the test's environment (minus FBR_*) to the server.
  const ScopedEnv env("DISPATCH_ITEST_SECRET", secret);
  Server server(dir, with_members(handlers(
                         {http_handler("hook", target.url("/hook?source=fbr"),
                                       R"("headers": {"X-Token": {"env": "DISPATCH_ITEST_SECRET"},)"
                                       R"( "X-Static": "static-value"}, "timeout_ms": 5000)")})));
  const Context context(server);
  INFO(context);

  const std::string id = new_log_id();
  const std::string body = event_with_log_id(id);
  post_ok(server, body, id);
  REQUIRE(wait_for_state(server, id, "hook", "done", 15s));
  const auto requests = target.requests();
  REQUIRE(requests.size() == 1);
  const auto& request = requests[0];
  CHECK(request.method == "POST");
  CHECK(request.target == "/hook?source=fbr");
  CHECK(request.header("X-Token") == secret);
  CHECK(request.header("X-Static") == "static-value");
  CHECK(request.body == body);
  CHECK_MESSAGE(request.header("Content-Type").value_or("").find("json") != std::string::npos,
                request.header("Content-Type").value_or("<none>"));

  // The secret stays out of the log and the CLI's output.
  CHECK(server.log().find(secret) == std::string::npos);
  const auto check = run_cli({"check-config", "--config", server.config_path().string()});
  CHECK_MESSAGE(check.exit_code == 0, check.output());
  CHECK(check.output().find(secret) == std::string::npos);
  const auto events = run_cli({"events", "--config", server.config_path().string(), "--json"});
  CHECK(events.output().find(secret) == std::string::npos);
}

TEST_CASE("dispatch: the file handler's dir mode writes <log-id>.json byte for byte 0600") {
  TempDir dir;
  const fs::path out = dir.path() / "out";  // created by the handler
  Server server(dir, with_members(handlers({file_dir_handler("files", out)})));
  const Context context(server);
  INFO(context);

  // Formatting, escapes and UTF-8 that a re-serialization would change.
  const std::string id_a = new_log_id();
  std::string body_a = event_with_log_id(id_a);
  body_a.insert(body_a.find('{') + 1,
                "\n\t\"note\" :  \"caf\xc3\xa9 \\u00e9 \\\"quoted\\\" \\/\",  \"n\": 1.50e+2 ,");
  body_a = "  " + body_a + "\n\n";
  const std::string id_b = new_log_id();
  const std::string body_b = in_progress_with_log_id(id_b);
  post_ok(server, body_a, id_a);
  post_ok(server, body_b, id_b);
  REQUIRE(wait_for_state(server, id_a, "files", "done", 15s));
  REQUIRE(wait_for_state(server, id_b, "files", "done", 15s));

  CHECK(files_in(out) == std::set<std::string>{id_a + ".json", id_b + ".json"});  // no temp files
  CHECK(read_file(out / (id_a + ".json")) == body_a);
  CHECK(read_file(out / (id_b + ".json")) == body_b);
  for (const auto& id : {id_a, id_b}) {
    struct stat st {};
    REQUIRE(::stat((out / (id + ".json")).c_str(), &st) == 0);
    CHECK_MESSAGE((st.st_mode & 0777) == 0600, "mode ", octal(st.st_mode & 0777));
  }
  struct stat dir_st {};
  REQUIRE(::stat(out.c_str(), &dir_st) == 0);
  CHECK_MESSAGE((dir_st.st_mode & 077) == 0, "directory mode ", octal(dir_st.st_mode & 0777));
}
