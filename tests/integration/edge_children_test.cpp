// Hostile input at the edges (issue 12), the part about what leaves the service: the children it
// starts (fds, environment, a restart after kill -9 while one runs), Log IDs that would reach file
// names, environments and terminals, the CLI's output, JSON log lines, and send's token.
#include <doctest/doctest.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/text.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/harness.hpp"

namespace fbr::itest {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using dispatch::file_lines;
using dispatch::poll_until;
using dispatch::process_alive;

// Secrets the service holds in its environment; no child may see any of them.
constexpr const char* kVerificationToken = "vt-secret-8d1f2c";
constexpr const char* kDownloadToken = "dl-secret-51e0aa";
constexpr const char* kNatsToken = "nats-secret-77c3b9";
constexpr const char* kSecretX = "x-secret-0b9e41";
constexpr const char* kProxyPassword = "proxy-secret-4a6d";

std::string shq(const std::string& text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

std::string json_quoted(const std::string& text) {
  return "\"" + core::json_escape(text) + "\"";
}

/// The descriptors in `ls -l /proc/self/fd` output, without ls's own one on that directory.
std::set<std::string> listed_fds(const fs::path& listing) {
  std::set<std::string> fds;
  for (const auto& line : file_lines(listing)) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos || line.ends_with("/fd")) continue;
    const auto space = line.rfind(' ', arrow - 1);
    fds.insert(line.substr(space + 1, arrow - space - 1));
  }
  return fds;
}

/// The service on a fixed port, started through `env` so that it holds the given variables (the
/// harness's Server drops FBR_* from a child's environment), its output appended to server.log.
class ServiceWithEnv {
 public:
  ServiceWithEnv(const TempDir& dir, unsigned short port, const std::string& handlers,
                 std::vector<std::string> variables)
      : dir_(dir), variables_(std::move(variables)), log_(dir.path() / "server.log") {
    ServerConfig settings;
    settings.tokens = std::vector<std::string>{"unused"};
    settings.extra_members = handlers;
    std::string config = config_json(settings, dir.path() / "data");
    const std::string any_port = "\"127.0.0.1:0\"";
    config.replace(config.find(any_port), any_port.size(),
                   "\"127.0.0.1:" + std::to_string(port) + "\"");
    write_file(dir.path() / "config.json", config);
  }

  /// Starts it; false when it exited or did not announce `listening` within `timeout`.
  bool start(std::chrono::milliseconds timeout = 20s) {
    std::error_code ec;
    const auto size = fs::file_size(log_, ec);
    const std::size_t offset = ec ? 0 : static_cast<std::size_t>(size);
    std::vector<std::string> argv{"env"};
    argv.insert(argv.end(), variables_.begin(), variables_.end());
    argv.insert(argv.end(), {std::string(FBR_BINARY), std::string("serve"), std::string("--config"),
                             (dir_.path() / "config.json").string()});
    process_ = std::make_unique<ChildProcess>(argv, log_);
    return poll_until(
        [&] {
          const std::string all = log();
          return all.size() > offset && all.find(" listening ", offset) != std::string::npos;
        },
        timeout, 2ms);
  }
  bool running() { return process_ && process_->running(); }
  void kill9() { process_->stop(SIGKILL, 5s); }
  void stop() {
    if (process_) process_->stop(SIGTERM, 10s);
  }
  std::string log() const { return read_file_or_empty(log_); }

 private:
  static std::string read_file_or_empty(const fs::path& file) {
    std::error_code ec;
    return fs::exists(file, ec) ? read_file(file) : std::string();
  }
  const TempDir& dir_;
  std::vector<std::string> variables_;
  fs::path log_;
  std::unique_ptr<ChildProcess> process_;
};

/// Kills (SIGKILL, whole process group) every process whose pid a test child wrote to `file`:
/// children orphaned by a kill -9 of the service must not outlive the test.
class OrphanReaper {
 public:
  explicit OrphanReaper(fs::path file) : file_(std::move(file)) {}
  ~OrphanReaper() { kill_all(); }
  OrphanReaper(const OrphanReaper&) = delete;
  OrphanReaper& operator=(const OrphanReaper&) = delete;
  std::vector<pid_t> pids() const {
    std::vector<pid_t> out;
    for (const auto& line : file_lines(file_)) {
      if (!line.empty()) out.push_back(static_cast<pid_t>(std::stol(line)));
    }
    return out;
  }
  void kill_all() const {
    for (const pid_t pid : pids()) {
      ::kill(-pid, SIGKILL);  // its own process group, as the service starts it
      ::kill(pid, SIGKILL);
    }
  }

 private:
  fs::path file_;
};

std::vector<std::string> service_secrets() {
  return {std::string("FBR_VERIFICATION_TOKEN=") + kVerificationToken,
          std::string("DL_TOKEN_X=") + kDownloadToken,
          std::string("NATS_TOKEN_X=") + kNatsToken,
          std::string("SECRET_X=") + kSecretX,
          std::string("https_proxy=http://user:") + kProxyPassword + "@127.0.0.9:3128",
          "PASS_ME=passed-on-purpose",
          "LANG=C.UTF-8",
          "TZ=UTC",
          "HOME=/var/lib/fbr-test"};
}

HttpResponse post_with_token(unsigned short port, const std::string& body) {
  return http(port, post_event(body, kVerificationToken));
}

}  // namespace

TEST_CASE("edge children: an exec child sees only fds 0-2 the allowlist and its env entries") {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  fs::create_directories(out);
  const std::string script = "env > " + shq((out / "env").string()) + "; ls -l /proc/self/fd > " +
                             shq((out / "fds.tmp").string()) + " && mv " +
                             shq((out / "fds.tmp").string()) + " " + shq((out / "fds").string());
  const std::string handlers =
      R"("handlers": [
        {"name": "dump", "type": "exec", "command": ["/bin/sh", "-c", )" +
      json_quoted(script) + R"(],
         "env": {"HANDLER_LITERAL": "literal-value", "HANDLER_FROM_ENV": {"env": "PASS_ME"}}},
        {"name": "dl", "type": "download", "dir": )" +
      json_quoted((dir.path() / "dl").string()) + R"(, "token_env": "DL_TOKEN_X",
         "when": {"source_id": "nobody"}}])";
  const unsigned short port = free_port();
  ServiceWithEnv service(dir, port, handlers, service_secrets());
  REQUIRE_MESSAGE(service.start(), service.log());
  INFO(service.log());
  const std::string log_id = new_log_id();
  REQUIRE(post_with_token(port, event_with_log_id(log_id)).status == 200);
  REQUIRE(poll_until([&] { return fs::exists(out / "fds"); }, 15s));
  service.stop();

  const std::string env = read_file(out / "env");
  INFO(env);
  for (const char* secret :
       {kVerificationToken, kDownloadToken, kNatsToken, kSecretX, kProxyPassword}) {
    CHECK_MESSAGE(env.find(secret) == std::string::npos, secret);
  }
  std::set<std::string> names;
  for (const auto& line : file_lines(out / "env"))
    names.insert(line.substr(0, line.find('=')));
  for (const char* shell_own : {"PWD", "OLDPWD", "SHLVL", "_"})
    names.erase(shell_own);  // sh sets these itself
  CHECK(names == std::set<std::string>{"PATH", "HOME", "LANG", "TZ", "HANDLER_LITERAL",
                                       "HANDLER_FROM_ENV", "FBR_LOG_ID", "FBR_EVENT_KEY",
                                       "FBR_ATTEMPT_ID", "FBR_STATUS", "FBR_EVENT_FILE",
                                       "FBR_HANDLER", "FBR_DELIVERY_ATTEMPT"});
  CHECK(env.find("HANDLER_LITERAL=literal-value\n") != std::string::npos);
  CHECK(env.find("HANDLER_FROM_ENV=passed-on-purpose\n") != std::string::npos);
  CHECK(env.find("FBR_LOG_ID=" + log_id + "\n") != std::string::npos);
  CHECK(env.find("LANG=C.UTF-8\n") != std::string::npos);
  CHECK(env.find("TZ=UTC\n") != std::string::npos);
  CHECK(env.find("HOME=/var/lib/fbr-test\n") != std::string::npos);
  // Not the listening socket, a connection or the journal's files: nothing but 0-2.
  CHECK(listed_fds(out / "fds") == std::set<std::string>{"0", "1", "2"});
}

TEST_CASE("edge children: an exec env entry naming an unset variable stops the start naming it") {
  TempDir dir;
  ServiceWithEnv service(dir, free_port(), R"("handlers": [
      {"name": "x", "type": "exec", "command": ["true"], "env": {"K": {"env": "FBR_ITEST_UNSET"}}}])",
                         {});
  CHECK_FALSE(service.start(10s));
  CHECK_FALSE(poll_until([&] { return service.running(); }, 0ms));
  CHECK(service.log().find("handler x: env.K takes its value from the environment variable "
                           "FBR_ITEST_UNSET, which is not set") != std::string::npos);
}

TEST_CASE("edge children: kill -9 with an exec child running then a restart on the port serves") {
  TempDir dir;
  const fs::path pids = dir.path() / "pids";
  OrphanReaper reaper(pids);
  const std::string script = "echo $$ >> " + shq(pids.string()) + "; exec sleep 30";
  const std::string handlers = R"("handlers": [{"name": "slow", "type": "exec", "timeout_ms": 60000,
      "command": ["/bin/sh", "-c", )" +
                               json_quoted(script) + "]}]";
  const unsigned short port = free_port();
  ServiceWithEnv service(dir, port, handlers, service_secrets());
  REQUIRE_MESSAGE(service.start(), service.log());
  REQUIRE(post_with_token(port, event_with_log_id(new_log_id())).status == 200);
  REQUIRE(poll_until([&] { return !reaper.pids().empty(); }, 15s));
  const pid_t child = reaper.pids().front();
  REQUIRE(process_alive(child));

  service.kill9();
  REQUIRE(process_alive(child));  // the orphan still runs, as a handler's child may
  const auto restarted_at = Clock::now();
  const bool listening = service.start(10s);
  const bool serving = listening && poll_until(
                                        [&] {
                                          try {
                                            return http(port, get("/healthz"), 1s).status == 200;
                                          } catch (const std::exception&) {
                                            return false;
                                          }
                                        },
                                        1s, 5ms);
  const auto took = Clock::now() - restarted_at;
  MESSAGE("from kill -9 to /healthz 200 on the same port: ",
          std::chrono::duration_cast<std::chrono::milliseconds>(took).count(), " ms");
  INFO(service.log());
  CHECK(listening);
  CHECK(serving);
  CHECK(took < 1s);
  CHECK(process_alive(child));  // it was not the old child's exit that freed the port
  reaper.kill_all();
  service.stop();
  reaper.kill_all();  // the restarted service resumed the delivery: a second sleep
}

TEST_CASE("edge children: Log IDs with control characters or over 256 bytes are 400") {
  TempDir dir;
  Server server(dir);
  INFO(server.log_tail());
  for (const std::string& bad : {std::string(R"(\u001b[2J)"), std::string(R"(a\nb)"),
                                 std::string(R"(x\u009b)"), std::string(300, 'a')}) {
    CAPTURE(bad);
    const auto answer = http(server.port(), post_event(event_with_log_id(bad)));
    CHECK(answer.status == 400);
    CHECK(answer.body.find("/Meta/Logs/0/ID") != std::string::npos);
  }
  // 256 bytes is still accepted (a warning: not a UUID).
  CHECK(http(server.port(), post_event(event_with_log_id(std::string(256, 'b')))).status == 200);
  CHECK(journal_count(server, "events") == 1);
}

TEST_CASE("edge children: a Log ID with an escape sequence is quarantined under quarantine") {
  TempDir dir;
  ServerConfig settings;
  settings.invalid_payloads = "quarantine";
  Server server(dir, settings);
  INFO(server.log_tail());
  const auto answer = http(server.port(), post_event(event_with_log_id(R"(\u001b[2J)")));
  CHECK(answer.status == 200);
  CHECK(answer.body.find("quarantined") != std::string::npos);
  CHECK(journal_count(server, "quarantine") == 1);
  CHECK(journal_count(server, "events") == 0);
}

TEST_CASE("edge children: the CLI's events output never holds a raw control character") {
  TempDir dir;
  Server server(dir);
  server.terminate();  // the journal exists; the rows below are written as an old version might
  const std::string nasty = "\x1b[2J\x1b]0;pwned\x07 row\nforged\r\x7f\xc2\x9b\x9b\x01z";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(server.journal_path().c_str(), &db) == SQLITE_OK);
    const auto exec = [&](const char* sql, const std::vector<std::string>& params) {
      sqlite3_stmt* stmt = nullptr;
      REQUIRE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK);
      for (std::size_t i = 0; i < params.size(); ++i) {
        sqlite3_bind_text(stmt, static_cast<int>(i + 1), params[i].data(),
                          static_cast<int>(params[i].size()), SQLITE_TRANSIENT);
      }
      CHECK(sqlite3_step(stmt) == SQLITE_DONE);
      sqlite3_finalize(stmt);
    };
    exec("INSERT INTO events VALUES (?, ?, ?, 200, 1, 1, ?, x'7b7d', ?, ?)",
         {nasty, nasty, nasty, "2026-01-01T00:00:00Z" + nasty, nasty, nasty});
    exec(
        "INSERT INTO attempts (event_key, attempt_id, received_at, remote_addr, request_id, "
        "duplicate) VALUES (?, ?, ?, ?, ?, 1)",
        {nasty, nasty, nasty, nasty, nasty});
    exec(
        "INSERT INTO deliveries (event_key, handler, state, attempts, last_error, updated_at) "
        "VALUES (?, ?, ?, 3, ?, ?)",
        {nasty, "h" + nasty, "dead" + nasty, "failed: " + nasty, nasty});
    sqlite3_close(db);
  }
  const std::string config = server.config_path().string();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"events", "--config", config},
           {"events", "--config", config, "--log-id", nasty},
           {"replay", "--config", config, "--log-id", "no\x1b[2Jsuch"}}) {
    const auto cli = run_cli(args);
    CAPTURE(cli.output());
    if (args.front() == "events") CHECK(cli.exit_code == 0);
    for (const std::string* text : {&cli.out, &cli.err}) {
      for (const char c : *text) {
        const auto u = static_cast<unsigned char>(c);
        const bool control = (u < 0x20 && c != '\n' && c != '\t') || u == 0x7f;
        CHECK_MESSAGE(!control, "byte ", static_cast<int>(u));
        if (control) break;
      }
    }
    if (args.front() == "events") {
      CHECK(cli.out.find("\\x1b[2J") != std::string::npos);  // shown, escaped
      CHECK(cli.out.find("\\u009b") != std::string::npos);
    }
  }
}

TEST_CASE("edge children: JSON log lines stay valid UTF-8 when a request target is not") {
  TempDir dir;
  ServerConfig settings;
  settings.log_format = "json";
  Server server(dir, settings);
  const auto exchange = raw_exchange(
      server.port(), "GET /a\xff\xfe\xc3(b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1,
      true, 10s);
  REQUIRE(exchange.responses.size() == 1);
  REQUIRE(server.wait_for_log("\xEF\xBF\xBD"));  // the access line, with U+FFFD
  for (const auto& line : server.log_lines()) {
    CAPTURE(line);
    CHECK(core::is_valid_utf8(line));
    CHECK_FALSE(parse_json(line).HasParseError());
  }
}

TEST_CASE("edge children: send reads its token from --token-env or FBR_SEND_TOKEN not argv") {
  TempDir dir;
  dispatch::HttpTarget target;
  target.set_delay(1500ms);  // long enough to read the running send's command line
  const fs::path body = dir.path() / "event.json";
  write_file(body, event_with_log_id(new_log_id()));
  const std::string token = "send-secret-3f9a1c";

  struct Case {
    std::string name;
    std::vector<std::string> env;
    std::vector<std::string> args;
  };
  for (const Case& c :
       {Case{"--token-env", {"MY_SEND_TOKEN=" + token}, {"--token-env", "MY_SEND_TOKEN"}},
        Case{"FBR_SEND_TOKEN", {"FBR_SEND_TOKEN=" + token}, {}}}) {
    CAPTURE(c.name);
    std::vector<std::string> argv{"env"};
    argv.insert(argv.end(), c.env.begin(), c.env.end());
    argv.insert(argv.end(), {std::string(FBR_BINARY), std::string("send"), std::string("--url"),
                             target.url("/" + c.name.substr(2))});
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    argv.push_back(body.string());
    const fs::path log = dir.path() / ("send-" + c.name.substr(2) + ".log");
    const std::size_t before = target.count();
    ChildProcess send(argv, log);
    // While it waits for the answer, its command line is what `ps` shows.
    std::string cmdline;
    REQUIRE(poll_until(
        [&] {
          std::error_code ec;
          const fs::path proc = "/proc/" + std::to_string(send.pid()) + "/cmdline";
          cmdline = fs::exists(proc, ec) ? read_file(proc) : std::string();
          return cmdline.find("send") != std::string::npos && target.count() > before;
        },
        10s));
    CHECK(cmdline.find(token) == std::string::npos);
    REQUIRE(poll_until([&] { return !send.running(); }, 10s));
    INFO(send.log());
    CHECK(send.log().starts_with("200\n"));
    const auto requests = target.requests();
    REQUIRE(requests.size() == before + 1);
    CHECK(requests.back().header("verification-token") == token);
  }

  // No token from anywhere: an error naming the three ways, and nothing sent.
  const auto none = run_cli({"send", "--url", target.url("/none"), body.string()});
  CHECK(none.exit_code == 2);
  CHECK(none.err.find("FBR_SEND_TOKEN") != std::string::npos);
  CHECK(none.err.find("--token-env") != std::string::npos);
  CHECK(none.err.find("--token ") != std::string::npos);
  const auto unset = run_cli(
      {"send", "--url", target.url("/none"), "--token-env", "FBR_ITEST_UNSET", body.string()});
  CHECK(unset.exit_code == 2);
  CHECK(unset.err.find("FBR_ITEST_UNSET") != std::string::npos);
  CHECK(target.count("/none") == 0);
}

}  // namespace fbr::itest
