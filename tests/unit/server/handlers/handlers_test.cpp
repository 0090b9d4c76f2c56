// The delivery handlers against real files, real child processes and a real HTTP target on
// loopback (a small blocking server in a thread, answering scripted statuses).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/text.hpp"
#include "server/handlers/file_handler.hpp"
#include "server/handlers/handler.hpp"
#include "server/handlers/http_handler.hpp"
#include "tests/unit/server/handlers/test_server.hpp"

using namespace fbr::server;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using fbr::server::test::Reply;
using fbr::server::test::Request;
using fbr::server::test::TestServer;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "fbr-handlers-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path = pattern;
  }
  ~TempDir() { fs::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

/// A logger whose output the test can read.
struct TestLog {
  std::ostringstream out;
  Logger logger{fbr::config::Log{"debug", fbr::config::LogFormat::kText},
                std::make_shared<spdlog::sinks::ostream_sink_mt>(out, true)};
  std::string text() {
    logger.flush();
    return out.str();
  }
};

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> lines_of(const fs::path& path) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

/// A pretty-printed event (as Redox sends it), and the same event on one line.
std::string event_body(const std::string& log_id) {
  return "{\n  \"Meta\": {\n    \"DataModel\": \"FHIR Bulk Data Access\",\n"
         "    \"EventType\": \"status-check-response\",\n"
         "    \"Logs\": [ { \"ID\": \"" +
         log_id +
         "\", \"AttemptID\": \"a-1\" } ]\n  },\n"
         "  \"status\": 200,\n  \"transactionTime\": \"2026-01-01T00:00:00Z\",\n"
         "  \"output\": [ {\"type\": \"Patient\", \"url\": \"https://x.test/1.ndjson\", "
         "\"count\": 1.50e2} ],\n  \"note\": \"a b\\n\\u00e9\"\n}\n";
}
std::string compact_event(const std::string& log_id) {
  return R"({"Meta":{"DataModel":"FHIR Bulk Data Access","EventType":"status-check-response",)"
         R"("Logs":[{"ID":")" +
         log_id +
         R"(","AttemptID":"a-1"}]},"status":200,"transactionTime":"2026-01-01T00:00:00Z",)"
         R"("output":[{"type":"Patient","url":"https://x.test/1.ndjson","count":1.50e2}],)"
         "\"note\":\"a b\\n\xC3\xA9\"}";
}

Delivery delivery_for(const std::string& key, const std::string& body, int attempt = 1) {
  Delivery d;
  d.event_key = key;
  d.log_id = key.starts_with("sha256:") ? "" : key;
  d.attempt_id = "attempt-" + key;
  d.status = 200;
  d.body = body;
  d.attempt = attempt;
  return d;
}

fbr::config::Handler file_config(const std::string& name, const fs::path& dir,
                                 const fs::path& path) {
  fbr::config::Handler h;
  h.name = name;
  h.type = "file";
  h.settings = fbr::config::FileHandler{dir.string(), path.string()};
  return h;
}

fbr::config::Handler exec_config(std::vector<std::string> command, std::uint32_t timeout_ms) {
  fbr::config::Handler h;
  h.name = "run-it";
  h.type = "exec";
  h.settings = fbr::config::ExecHandler{std::move(command), timeout_ms, {}};
  return h;
}

fbr::config::Handler http_config(const std::string& url,
                                 std::map<std::string, fbr::config::HeaderValue> headers = {},
                                 std::uint32_t timeout_ms = 2000) {
  fbr::config::Handler h;
  h.name = "forward";
  h.type = "http";
  h.settings = fbr::config::HttpHandler{url, std::move(headers), timeout_ms};
  return h;
}

/// Waits until `done()` holds or the deadline passes; returns its last value.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds within = std::chrono::seconds(2)) {
  const auto deadline = Clock::now() + within;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// Processes (not zombies) whose process group is `pgid`, from /proc.
std::vector<int> live_members_of_group(int pgid) {
  std::vector<int> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_file(entry.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    char state = '?';
    int ppid = 0;
    int pgrp = 0;
    fields >> state >> ppid >> pgrp;
    if (pgrp == pgid && state != 'Z' && state != 'X') pids.push_back(std::stoi(name));
  }
  return pids;
}

/// A loopback port nothing listens on.
std::uint16_t closed_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  return ntohs(addr.sin_port);
}

class Throwing final : public Handler {
 public:
  using Handler::Handler;

 protected:
  Outcome run(const Delivery&) override { throw std::runtime_error("boom"); }
};

}  // namespace

// ---- the protocol ------------------------------------------------------------------------------

TEST_CASE("handler: deliver turns exceptions into retries and logs one line per attempt") {
  TestLog log;
  Throwing handler("thrower", log.logger);
  const std::string body = event_body("log-1");
  const Outcome outcome = handler.deliver(delivery_for("log-1", body, 3));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message == "boom");
  const std::string text = log.text();
  CHECK(contains(text, "delivery"));
  CHECK(contains(text, "log_id=log-1"));
  CHECK(contains(text, "attempt_id=attempt-log-1"));
  CHECK(contains(text, "handler=thrower"));
  CHECK(contains(text, "attempt=3"));
  CHECK(contains(text, "outcome=retry"));
  CHECK(contains(text, "duration_ms="));
  CHECK(contains(text, "error=boom"));
  CHECK(to_string(Outcome::Kind::kDone) == "done");
  CHECK(to_string(Outcome::Kind::kRetry) == "retry");
  CHECK(to_string(Outcome::Kind::kDead) == "dead");
}

TEST_CASE("handler: file_stem keeps safe Log IDs and hashes anything else") {
  CHECK(file_stem("0f8c7b0e-9d3c-4f6a-8a51-2b1c1f1e1d1c") ==
        "0f8c7b0e-9d3c-4f6a-8a51-2b1c1f1e1d1c");
  CHECK(file_stem("a/b/../c") == "sha256-" + fbr::core::sha256_hex("a/b/../c"));
  CHECK(file_stem("sha256:abc") == "sha256-" + fbr::core::sha256_hex("sha256:abc"));
  CHECK(file_stem(".hidden").starts_with("sha256-"));
  CHECK(file_stem("").starts_with("sha256-"));
  CHECK(file_stem(std::string(300, 'a')).starts_with("sha256-"));
}

TEST_CASE("handler: file_stem hashes a Log ID that starts with the hash prefix (no collision)") {
  // The hashed name of an event without a Log ID, given literally as another event's Log ID.
  const std::string hashed = file_stem("sha256:" + std::string(64, '0'));
  REQUIRE(hashed.starts_with("sha256-"));
  CHECK(file_stem(hashed) == "sha256-" + fbr::core::sha256_hex(hashed));
  CHECK(file_stem(hashed) != hashed);
  CHECK(file_stem("SHA256-abc") == "sha256-" + fbr::core::sha256_hex("SHA256-abc"));
  CHECK(file_stem("sha256-") == "sha256-" + fbr::core::sha256_hex("sha256-"));
  // Names that merely look alike are kept as they were.
  CHECK(file_stem("sha256") == "sha256");
  CHECK(file_stem("sha256_x") == "sha256_x");
  CHECK(file_stem("my-sha256-x") == "my-sha256-x");
}

TEST_CASE("handler: make_handler builds a nats handler that retries while NATS is unreachable") {
  TestLog log;
  fbr::config::Handler h;
  h.name = "broker";
  h.type = "nats";
  fbr::config::NatsHandler settings;
  settings.servers = {"nats://127.0.0.1:1"};  // nothing listens there
  settings.subject = "out.events";
  h.settings = settings;
  const auto started = Clock::now();
  auto handler = make_handler(h, "/tmp", log.logger);  // connects in the background
  REQUIRE(handler != nullptr);
  const Delivery d{"key-1", "key-1", "attempt-1", 200, "{}", 1};
  const Outcome o = handler->deliver(d);
  CHECK(o.kind == Outcome::Kind::kRetry);
  CHECK(o.message.find("not connected to NATS") != std::string::npos);
  CHECK(Clock::now() - started < std::chrono::seconds(5));
}

TEST_CASE("handler: make_handler builds a download handler") {
  TestLog log;
  fbr::config::Handler h;
  h.name = "fetch";
  h.type = "download";
  fbr::config::DownloadHandler settings;
  settings.dir = "/tmp/fbr-unused";
  h.settings = settings;
  const auto handler = make_handler(h, "/tmp", log.logger);
  REQUIRE(handler != nullptr);
  CHECK(handler->name() == "fetch");
}

// ---- file --------------------------------------------------------------------------------------

TEST_CASE(
    "handler file: dir mode writes <log-id>.json, owner-only, and a re-delivery is harmless") {
  TempDir tmp;
  TestLog log;
  const fs::path dir = tmp.path / "out" / "events";  // created, 0700
  auto handler = make_handler(file_config("files", dir, ""), tmp.path, log.logger);
  const std::string body = event_body("log-1");
  REQUIRE(handler->deliver(delivery_for("log-1", body)).kind == Outcome::Kind::kDone);
  CHECK(read_file(dir / "log-1.json") == body);
  CHECK(mode_of(dir / "log-1.json") == 0600);
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(tmp.path / "out") == 0700);

  CHECK(handler->deliver(delivery_for("log-1", body, 2)).kind == Outcome::Kind::kDone);
  const std::string no_log_id = "sha256:" + fbr::core::sha256_hex("x");
  CHECK(handler->deliver(delivery_for(no_log_id, "{}")).kind == Outcome::Kind::kDone);
  CHECK(read_file(dir / (file_stem(no_log_id) + ".json")) == "{}");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  CHECK(names.size() == 2);  // no temporary file left behind
  CHECK(read_file(dir / "log-1.json") == body);
}

TEST_CASE("handler file: path mode appends one compact line per event never twice") {
  TempDir tmp;
  TestLog log;
  const fs::path path = tmp.path / "sub" / "events.ndjson";
  const std::string a = event_body("log-a");
  const std::string b = event_body("log-b");
  const std::string c = event_body("log-c");
  const std::string anonymous = R"({"Meta": {"Logs": []}, "status": 202, "output": []})";
  const std::string anonymous_key = "sha256:" + fbr::core::sha256_hex(anonymous);
  {
    auto handler = make_handler(file_config("lines", "", path), tmp.path, log.logger);
    CHECK(handler->deliver(delivery_for("log-a", a)).kind == Outcome::Kind::kDone);
    CHECK(handler->deliver(delivery_for("log-a", a, 2)).kind == Outcome::Kind::kDone);
    CHECK(handler->deliver(delivery_for("log-b", b)).kind == Outcome::Kind::kDone);
    CHECK(handler->deliver(delivery_for(anonymous_key, anonymous)).kind == Outcome::Kind::kDone);
    CHECK(handler->deliver(delivery_for(anonymous_key, anonymous)).kind == Outcome::Kind::kDone);
  }
  auto lines = lines_of(path);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == compact_event("log-a"));
  CHECK(lines[1] == compact_event("log-b"));
  CHECK(lines[2] == R"({"Meta":{"Logs":[]},"status":202,"output":[]})");
  CHECK(mode_of(path) == 0600);
  CHECK(mode_of(FileHandler::keys_path(path)) == 0600);
  CHECK(mode_of(tmp.path / "sub") == 0700);

  // A new instance (a restart) on the same file still knows what is in it.
  auto again = make_handler(file_config("lines", "", path), tmp.path, log.logger);
  CHECK(again->deliver(delivery_for("log-a", a, 3)).kind == Outcome::Kind::kDone);
  CHECK(again->deliver(delivery_for(anonymous_key, anonymous)).kind == Outcome::Kind::kDone);
  CHECK(again->deliver(delivery_for("log-c", c)).kind == Outcome::Kind::kDone);
  lines = lines_of(path);
  REQUIRE(lines.size() == 4);
  CHECK(lines[3] == compact_event("log-c"));
  CHECK(read_file(path).back() == '\n');
}

TEST_CASE("handler file: path mode repairs what a crash mid-append left") {
  TempDir tmp;
  TestLog log;
  const fs::path path = tmp.path / "events.ndjson";
  const std::string a = event_body("log-a");
  const std::string b = event_body("log-b");
  {
    auto handler = make_handler(file_config("lines", "", path), tmp.path, log.logger);
    REQUIRE(handler->deliver(delivery_for("log-a", a)).kind == Outcome::Kind::kDone);
  }
  // The crash: b's key reached the index, b's line only half the file.
  {
    std::ofstream keys(FileHandler::keys_path(path), std::ios::app);
    keys << "log-b\n";
    std::ofstream lines(path, std::ios::app);
    lines << compact_event("log-b").substr(0, 40);
  }
  auto handler = make_handler(file_config("lines", "", path), tmp.path, log.logger);
  CHECK(contains(log.text(), "file_handler_repaired"));
  CHECK(lines_of(path) == std::vector<std::string>{compact_event("log-a")});
  CHECK(handler->deliver(delivery_for("log-a", a, 2)).kind == Outcome::Kind::kDone);
  CHECK(handler->deliver(delivery_for("log-b", b, 2)).kind == Outcome::Kind::kDone);
  CHECK(lines_of(path) == std::vector<std::string>{compact_event("log-a"), compact_event("log-b")});
  CHECK(lines_of(FileHandler::keys_path(path)) == std::vector<std::string>{"log-a", "log-b"});
}

TEST_CASE("handler file: path mode indexes a file it did not write (no sidecar yet)") {
  TempDir tmp;
  TestLog log;
  const fs::path path = tmp.path / "events.ndjson";
  const std::string anonymous = R"({"status":202})";
  write_file(path, compact_event("log-a") + "\n" + anonymous + "\n");
  auto handler = make_handler(file_config("lines", "", path), tmp.path, log.logger);
  CHECK(handler->deliver(delivery_for("log-a", event_body("log-a"))).kind == Outcome::Kind::kDone);
  CHECK(handler->deliver(delivery_for("sha256:" + fbr::core::sha256_hex(anonymous), anonymous))
            .kind == Outcome::Kind::kDone);
  CHECK(lines_of(path).size() == 2);
  CHECK(lines_of(FileHandler::keys_path(path)) ==
        std::vector<std::string>{"log-a", "sha256:" + fbr::core::sha256_hex(anonymous)});
}

TEST_CASE("handler file: path mode sees lines another instance appended") {
  TempDir tmp;
  TestLog log;
  const fs::path path = tmp.path / "events.ndjson";
  const std::string a = event_body("log-a");
  auto first = make_handler(file_config("lines", "", path), tmp.path, log.logger);
  auto second = make_handler(file_config("lines", "", path), tmp.path, log.logger);  // SIGHUP
  CHECK(second->deliver(delivery_for("log-a", a)).kind == Outcome::Kind::kDone);
  CHECK(first->deliver(delivery_for("log-a", a)).kind == Outcome::Kind::kDone);
  CHECK(lines_of(path).size() == 1);
}

TEST_CASE("handler file: concurrent deliveries in path mode write each event once") {
  TempDir tmp;
  TestLog log;
  const fs::path path = tmp.path / "events.ndjson";
  auto handler = make_handler(file_config("lines", "", path), tmp.path, log.logger);
  std::vector<std::string> bodies;
  for (int i = 0; i < 10; ++i)
    bodies.push_back(event_body("log-" + std::to_string(i)));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        const std::string key = "log-" + std::to_string(i);
        if (handler->deliver(delivery_for(key, bodies[static_cast<std::size_t>(i)])).kind !=
            Outcome::Kind::kDone) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads)
    t.join();
  CHECK(failures == 0);
  CHECK(lines_of(path).size() == 10);
  CHECK(lines_of(FileHandler::keys_path(path)).size() == 10);
}

TEST_CASE("handler file: a body that is not JSON is dead in path mode") {
  TempDir tmp;
  TestLog log;
  auto handler =
      make_handler(file_config("lines", "", tmp.path / "e.ndjson"), tmp.path, log.logger);
  const Outcome outcome = handler->deliver(delivery_for("log-x", "{\"a\": "));
  CHECK(outcome.kind == Outcome::Kind::kDead);
  CHECK(contains(outcome.message, "not JSON"));
  CHECK(read_file(tmp.path / "e.ndjson").empty());
}

// ---- exec --------------------------------------------------------------------------------------

TEST_CASE("handler exec: exit 0 is done - the event arrives on stdin in a file and in the env") {
  TempDir tmp;
  TestLog log;
  ::setenv("FBR_VERIFICATION_TOKEN", "do-not-leak", 1);
  const fs::path out = tmp.path / "out";
  fs::create_directory(out);
  auto handler = make_handler(
      exec_config({"sh", "-c",
                   R"(cat > "$1/stdin"; env > "$1/env"; cp "$FBR_EVENT_FILE" "$1/event";)"
                   R"( stat -c %a "$FBR_EVENT_FILE" > "$1/mode"; echo fine)",
                   "sh", out.string()},
                  5000),
      tmp.path / "data", log.logger);
  const std::string body = event_body("log-1");
  const Outcome outcome = handler->deliver(delivery_for("log-1", body, 2));
  ::unsetenv("FBR_VERIFICATION_TOKEN");
  INFO(outcome.message);
  CHECK(outcome.kind == Outcome::Kind::kDone);
  CHECK(read_file(out / "stdin") == body);
  CHECK(read_file(out / "event") == body);
  CHECK(read_file(out / "mode") == "600\n");
  const std::string env = read_file(out / "env");
  CHECK(contains(env, "FBR_LOG_ID=log-1\n"));
  CHECK(contains(env, "FBR_EVENT_KEY=log-1\n"));
  CHECK(contains(env, "FBR_ATTEMPT_ID=attempt-log-1\n"));
  CHECK(contains(env, "FBR_STATUS=200\n"));
  CHECK(contains(env, "FBR_HANDLER=run-it\n"));
  CHECK(contains(env, "FBR_DELIVERY_ATTEMPT=2\n"));
  CHECK(contains(env, "FBR_EVENT_FILE=" + (tmp.path / "data" / "tmp").string() + "/log-1."));
  CHECK(contains(env, "PATH="));  // the service's environment is passed on
  CHECK_FALSE(contains(env, "FBR_VERIFICATION_TOKEN"));
  CHECK_FALSE(contains(env, "do-not-leak"));
  CHECK(fs::is_empty(tmp.path / "data" / "tmp"));  // the event file is removed after the run
  CHECK(mode_of(tmp.path / "data" / "tmp") == 0700);
}

TEST_CASE("handler exec: the child gets only fds 0-2 the allowlist and its env entries") {
  TempDir tmp;
  TestLog log;
  ::setenv("FBR_VERIFICATION_TOKEN", "vt-do-not-leak", 1);
  ::setenv("SECRET_X", "x-do-not-leak", 1);
  ::setenv("FBR_TEST_EXEC_SOURCE", "from-the-service", 1);
  const fs::path out = tmp.path / "out";
  fs::create_directory(out);
  auto config = exec_config(
      {"sh", "-c", R"(env > "$1/env"; ls -l /proc/self/fd > "$1/fds")", "sh", out.string()}, 5000);
  std::get<fbr::config::ExecHandler>(config.settings).env = {
      {"LITERAL_X", {"a literal", ""}}, {"FROM_SERVICE", {"", "FBR_TEST_EXEC_SOURCE"}}};
  auto handler = make_handler(config, tmp.path / "data", log.logger);
  // Read at start: a later change of the service's environment does not matter.
  ::setenv("FBR_TEST_EXEC_SOURCE", "changed", 1);
  const Outcome outcome = handler->deliver(delivery_for("log-2", event_body("log-2")));
  ::unsetenv("FBR_VERIFICATION_TOKEN");
  ::unsetenv("SECRET_X");
  ::unsetenv("FBR_TEST_EXEC_SOURCE");
  INFO(outcome.message);
  REQUIRE(outcome.kind == Outcome::Kind::kDone);
  const std::string env = read_file(out / "env");
  INFO(env);
  CHECK_FALSE(contains(env, "do-not-leak"));
  CHECK(contains(env, "LITERAL_X=a literal\n"));
  CHECK(contains(env, "FROM_SERVICE=from-the-service\n"));
  std::set<std::string> names;
  for (const auto& line : lines_of(out / "env"))
    names.insert(line.substr(0, line.find('=')));
  // sh adds PWD (and may add SHLVL, _) itself; nothing else is there.
  names.erase("PWD");
  names.erase("SHLVL");
  names.erase("_");
  names.erase("OLDPWD");
  for (const char* allowed : {"PATH", "HOME", "LANG", "TZ"})
    names.erase(allowed);
  CHECK(names == std::set<std::string>{"LITERAL_X", "FROM_SERVICE", "FBR_LOG_ID", "FBR_EVENT_KEY",
                                       "FBR_ATTEMPT_ID", "FBR_STATUS", "FBR_EVENT_FILE",
                                       "FBR_HANDLER", "FBR_DELIVERY_ATTEMPT"});
  std::set<std::string> fds;
  for (const auto& line : lines_of(out / "fds")) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos || line.ends_with("/fd")) continue;  // ls's own directory
    fds.insert(line.substr(line.rfind(' ', arrow - 1) + 1, arrow - line.rfind(' ', arrow - 1) - 1));
  }
  CHECK(fds == std::set<std::string>{"0", "1", "2"});
}

TEST_CASE("handler exec: an env entry whose variable is unset stops the handler from starting") {
  TestLog log;
  ::unsetenv("FBR_TEST_UNSET_VARIABLE");
  auto config = exec_config({"true"}, 5000);
  std::get<fbr::config::ExecHandler>(config.settings).env = {
      {"NEEDED", {"", "FBR_TEST_UNSET_VARIABLE"}}};
  CHECK_THROWS_WITH(make_handler(config, "/tmp", log.logger),
                    "handler run-it: env.NEEDED takes its value from the environment variable "
                    "FBR_TEST_UNSET_VARIABLE, which is not set");
}

TEST_CASE("handler exec: a non-zero exit is retried with the end of stderr") {
  TempDir tmp;
  TestLog log;
  auto handler = make_handler(
      exec_config({"sh", "-c", "echo to-stdout; echo something broke >&2; exit 3"}, 5000), tmp.path,
      log.logger);
  const Outcome outcome = handler->deliver(delivery_for("log-1", event_body("log-1")));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message == "exit status 3: something broke");
  CHECK(contains(log.text(), "something broke"));
}

TEST_CASE("handler exec: output is captured bounded and a child that never reads is no trouble") {
  TempDir tmp;
  TestLog log;
  auto handler =
      make_handler(exec_config({"sh", "-c",
                                "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo last-words >&2;"
                                " exit 1"},
                               5000),
                   tmp.path, log.logger);
  const std::string big(2 * 1024 * 1024, ' ');  // far more than a pipe holds; never read
  const Outcome outcome = handler->deliver(delivery_for("log-1", "{}" + big));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message.starts_with("exit status 1: xxx"));
  CHECK(outcome.message.ends_with("last-words"));
  CHECK(outcome.message.size() <= 4096 + 20);
}

TEST_CASE("handler exec: a hanging command is killed at timeout_ms with its process group") {
  TempDir tmp;
  TestLog log;
  const fs::path leader = tmp.path / "leader";
  const fs::path background = tmp.path / "background";
  auto handler = make_handler(exec_config({"sh", "-c",
                                           R"(echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; sleep 30 & )"
                                           R"(echo $! > "$2.tmp"; mv "$2.tmp" "$2"; sleep 30)",
                                           "sh", leader.string(), background.string()},
                                          300),
                              tmp.path, log.logger);
  const auto started = Clock::now();
  const Outcome outcome = handler->deliver(delivery_for("log-1", event_body("log-1")));
  const auto took = Clock::now() - started;
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message == "killed after timeout 300 ms");
  CHECK(took >= std::chrono::milliseconds(300));
  CHECK(took < std::chrono::milliseconds(1500));  // sh died of SIGTERM: no 2 s grace needed
  REQUIRE(fs::exists(leader));
  REQUIRE(fs::exists(background));
  const int pgid = std::stoi(read_file(leader));
  CHECK(eventually([&] { return live_members_of_group(pgid).empty(); }));
}

TEST_CASE("handler exec: a command that ignores SIGTERM gets SIGKILL 2 s later") {
  TempDir tmp;
  TestLog log;
  const fs::path leader = tmp.path / "leader";
  auto handler = make_handler(exec_config({"sh", "-c",
                                           R"(trap '' TERM; echo $$ > "$1.tmp"; mv "$1.tmp" "$1";)"
                                           R"( sleep 30; sleep 30)",
                                           "sh", leader.string()},
                                          100),
                              tmp.path, log.logger);
  const auto started = Clock::now();
  const Outcome outcome = handler->deliver(delivery_for("log-1", event_body("log-1")));
  const auto took = Clock::now() - started;
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message == "killed after timeout 100 ms");
  CHECK(took >= std::chrono::milliseconds(2100));
  CHECK(took < std::chrono::milliseconds(3500));
  REQUIRE(fs::exists(leader));
  const int pgid = std::stoi(read_file(leader));
  CHECK(eventually([&] { return live_members_of_group(pgid).empty(); }));
}

TEST_CASE("handler exec: concurrent runs do not hold each other's stdin open") {
  TempDir tmp;
  TestLog log;
  // `cat` ends only at EOF on stdin: a write end leaked into a sibling would make it time out.
  auto handler = make_handler(exec_config({"cat"}, 3000), tmp.path, log.logger);
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = "log-" + std::to_string(t);
      if (handler->deliver(delivery_for(key, event_body(key))).kind == Outcome::Kind::kDone) {
        ++done;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  CHECK(done == 4);
}

TEST_CASE("handler exec: a missing command is retried naming it") {
  TempDir tmp;
  TestLog log;
  auto handler =
      make_handler(exec_config({"fbr-no-such-command-here", "x"}, 1000), tmp.path, log.logger);
  const Outcome outcome = handler->deliver(delivery_for("log-1", event_body("log-1")));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(contains(outcome.message, "fbr-no-such-command-here"));
  CHECK(contains(outcome.message, "No such file"));
}

// ---- http --------------------------------------------------------------------------------------

TEST_CASE("handler http: 2xx is done - the body and the headers arrive secrets stay out of logs") {
  TestServer server({{200, "", "ok"}});
  TestLog log;
  ::setenv("FBR_TEST_HTTP_SECRET", "s3cret-value", 1);
  auto handler = make_handler(
      http_config(server.url("/hook?sig=q"),
                  {{"Authorization", {"", "FBR_TEST_HTTP_SECRET"}}, {"X-Team", {"blue", ""}}}),
      "/tmp", log.logger);
  ::unsetenv("FBR_TEST_HTTP_SECRET");  // read once, at construction
  const std::string body = event_body("log-1");
  CHECK(handler->deliver(delivery_for("log-1", body)).kind == Outcome::Kind::kDone);
  const auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  const Request& r = requests.front();
  CHECK(r.request_line == "POST /hook?sig=q HTTP/1.1");
  CHECK(r.body == body);
  CHECK(r.headers.at("authorization") == "s3cret-value");
  CHECK(r.headers.at("x-team") == "blue");
  CHECK(r.headers.at("content-type") == "application/json");
  CHECK(r.headers.at("user-agent") == std::string("fhir-bulk-receiver/") + FBR_VERSION);
  CHECK(r.headers.at("x-fbr-log-id") == "log-1");
  CHECK(r.headers.at("x-fbr-event-key") == "log-1");
  CHECK_FALSE(r.headers.contains("expect"));
  CHECK_FALSE(contains(log.text(), "s3cret"));
  CHECK(contains(log.text(), "outcome=done"));
}

TEST_CASE("handler http: an env header whose variable is unset stops the handler from starting") {
  TestLog log;
  ::unsetenv("FBR_TEST_UNSET_VARIABLE");
  CHECK_THROWS_WITH(
      make_handler(http_config("http://127.0.0.1:9/", {{"X-Key", {"", "FBR_TEST_UNSET_VARIABLE"}}}),
                   "/tmp", log.logger),
      doctest::Contains("FBR_TEST_UNSET_VARIABLE"));
}

TEST_CASE("handler http: 503 and 429 are retried honouring Retry-After - 404 is dead") {
  char date[64];
  const std::time_t later = std::time(nullptr) + 120;
  std::tm tm{};
  ::gmtime_r(&later, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  TestServer server({{503, "Retry-After: 7\r\n", "busy"},
                     {429, std::string("Retry-After: ") + date + "\r\n", ""},
                     {429, "", ""},
                     {404, "", "not here\n" + std::string(500, 'z')},
                     {302, "Location: http://127.0.0.1:1/\r\n", ""}});
  TestLog log;
  auto handler = make_handler(http_config(server.url()), "/tmp", log.logger);
  const std::string body = event_body("log-1");

  Outcome outcome = handler->deliver(delivery_for("log-1", body));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message == "HTTP 503 from " + server.url() + ": busy");
  REQUIRE(outcome.retry_after.has_value());
  CHECK(*outcome.retry_after == std::chrono::milliseconds(7000));

  outcome = handler->deliver(delivery_for("log-1", body, 2));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  REQUIRE(outcome.retry_after.has_value());
  CHECK(*outcome.retry_after > std::chrono::seconds(100));
  CHECK(*outcome.retry_after <= std::chrono::seconds(121));

  outcome = handler->deliver(delivery_for("log-1", body, 3));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message == "HTTP 429 from " + server.url());
  CHECK_FALSE(outcome.retry_after.has_value());

  outcome = handler->deliver(delivery_for("log-1", body, 4));
  CHECK(outcome.kind == Outcome::Kind::kDead);
  CHECK(outcome.message == "HTTP 404 from " + server.url() + ": not here " + std::string(191, 'z'));

  outcome = handler->deliver(delivery_for("log-1", body, 5));  // redirects are not followed
  CHECK(outcome.kind == Outcome::Kind::kDead);
  CHECK(outcome.message == "HTTP 302 from " + server.url());
  CHECK(server.requests().size() == 5);
}

TEST_CASE("handler http: connection refused and timeouts are retried") {
  TestLog log;
  const std::string refused_url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/hook";
  auto refused = make_handler(http_config(refused_url), "/tmp", log.logger);
  Outcome outcome = refused->deliver(delivery_for("log-1", "{}"));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(outcome.message.starts_with("POST " + refused_url + ": "));

  TestServer server({{200, "", "", true}});
  auto slow = make_handler(http_config(server.url(), {}, 200), "/tmp", log.logger);
  const auto started = Clock::now();
  outcome = slow->deliver(delivery_for("log-1", "{}"));
  CHECK(outcome.kind == Outcome::Kind::kRetry);
  CHECK(contains(outcome.message, "Timeout"));
  CHECK(Clock::now() - started < std::chrono::seconds(2));
}

TEST_CASE("handler http: Retry-After and URL helpers") {
  const std::time_t now = 1'700'000'000;
  CHECK(parse_retry_after("7", now) == std::chrono::milliseconds(7000));
  CHECK(parse_retry_after(" 0 ", now) == std::chrono::milliseconds(0));
  CHECK_FALSE(parse_retry_after("soon", now).has_value());
  CHECK_FALSE(parse_retry_after("", now).has_value());
  CHECK(parse_retry_after("Tue, 14 Nov 2023 22:13:27 GMT", now) == std::chrono::seconds(7));
  CHECK(parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == std::chrono::seconds(0));
  CHECK(url_for_messages("https://user:pw@hooks.test:8443/in?token=x#f") ==
        "https://user:<redacted>@hooks.test:8443/in");
  CHECK(url_for_messages("http://hooks.test/a@b") == "http://hooks.test/a@b");
}
