// Production hardening (issue 5): HTTPS, slow clients, the connection cap, request smuggling,
// graceful shutdown under load, SIGHUP reloads and the /metrics exposition. Each test fails if
// the property it names does not hold.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardening_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using namespace fbr::itest::hardening;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

std::string url(unsigned short port, std::string_view scheme = "https") {
  return std::string(scheme) + "://127.0.0.1:" + std::to_string(port) + "/webhook";
}

/// The status code written by curl's `-w "\n%{http_code}"`, and the body before it.
struct CurlAnswer {
  int exit_code = -1;
  int status = 0;
  std::string body;
  std::string verbose;  ///< curl's stderr (with -v: the TLS version used)
};

CurlAnswer curl_post(const std::vector<std::string>& options, const std::string& target,
                     const fs::path& body_file, const std::string& token = "test-token") {
  std::vector<std::string> args{"curl", "-sS", "--max-time", "20"};
  args.insert(args.end(), options.begin(), options.end());
  args.insert(args.end(), {"-H", "Content-Type: application/json", "-H",
                           "verification-token: " + token, "-H", "Expect:", "--data-binary",
                           "@" + body_file.string(), "-w", "\n%{http_code}", target});
  const auto r = run_process(args, {}, 30s);
  CurlAnswer answer;
  answer.exit_code = r.exit_code;
  answer.verbose = r.err;
  const auto newline = r.out.rfind('\n');
  if (newline != std::string::npos) {
    answer.body = r.out.substr(0, newline);
    answer.status = std::atoi(r.out.c_str() + newline + 1);
  }
  return answer;
}

/// A server with HTTPS on a certificate made for the test.
struct TlsServer {
  TempDir dir;
  TestPki pki = make_test_pki(dir.path());
  std::unique_ptr<Server> server;

  explicit TlsServer(std::string more_members = {}) {
    ServerConfig config;
    config.extra_members = tls_member(pki.server_cert, pki.server_key);
    if (!more_members.empty()) config.extra_members += ", " + more_members;
    server = std::make_unique<Server>(dir, config);
  }
  fs::path write_event(const std::string& log_id) const {
    const fs::path file = dir.path() / (log_id + ".json");
    write_file(file, event_with_log_id(log_id));
    return file;
  }
};

/// `openssl s_client` restricted to one protocol version; the client's own security level is
/// lowered so that it really offers that version: a refusal then comes from the server.
ProcessResult s_client(unsigned short port, const std::vector<std::string>& options) {
  std::vector<std::string> args{"openssl", "s_client", "-connect",
                                "127.0.0.1:" + std::to_string(port)};
  args.insert(args.end(), options.begin(), options.end());
  return run_process(args, {}, 20s);
}

/// The config file the harness writes, with `listen` pinned to the port the server bound (a
/// reload keeps the listener anyway; the file should say what runs).
std::string config_on_port(const ServerConfig& config, const Server& server) {
  std::string text = config_json(config, server.data_dir());
  const std::string any = "\"127.0.0.1:0\"";
  const auto at = text.find(any);
  REQUIRE(at != std::string::npos);
  text.replace(at, any.size(), "\"127.0.0.1:" + std::to_string(server.port()) + "\"");
  return text;
}

void sighup(const Server& server) {
  REQUIRE(server.pid() > 0);
  REQUIRE(::kill(server.pid(), SIGHUP) == 0);
}

double value_or_minus_one(std::string_view text, std::string_view name,
                          std::string_view labels = {}) {
  return metric_value(text, name, labels).value_or(-1);
}

std::string chunked(std::string_view body) {
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", body.size());
  return std::string(size_line) + std::string(body) + "\r\n0\r\n\r\n";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// HTTPS

TEST_CASE(
    "hardening: HTTPS - curl --cacert with a CA made by the test posts the seed event - 200") {
  TlsServer tls;
  Server& server = *tls.server;
  INFO("server log tail:\n", server.log_tail());
  const auto listening = server.wait_for_line({"listening", "tls=true"}, 1s);
  CHECK_MESSAGE(listening.has_value(), "the listening line does not say tls=true");

  const fs::path event = tls.write_event(kSeedLogId);  // the seed example as it is
  const auto answer =
      curl_post({"-v", "--cacert", tls.pki.ca_cert.string()}, url(server.port()), event);
  INFO("curl exit ", answer.exit_code, " stderr:\n", answer.verbose);
  REQUIRE(answer.exit_code == 0);
  CHECK(answer.status == 200);
  const auto doc = parse_json(answer.body);
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(json_str(doc, "/status") == "accepted");
  CHECK(json_str(doc, "/logId") == kSeedLogId);
  CHECK(journal_count(server, "events", "log_id = ?", {kSeedLogId}) == 1);

  // The certificate is really checked: without the CA, curl does not trust the server.
  const auto untrusted = curl_post({}, url(server.port()), event);
  CHECK_MESSAGE(untrusted.exit_code == 60, "curl without --cacert: exit ", untrusted.exit_code, " ",
                untrusted.verbose);
}

TEST_CASE("hardening: HTTPS - TLS 1.1 and 1.0 are refused - TLS 1.2 and 1.3 work") {
  TlsServer tls;
  Server& server = *tls.server;
  INFO("server log tail:\n", server.log_tail());

  for (const std::string version : {"-tls1_1", "-tls1"}) {
    CAPTURE(version);
    const auto r = s_client(server.port(), {version, "-cipher", "DEFAULT:@SECLEVEL=0"});
    INFO("openssl s_client output:\n", r.output());
    CHECK(r.exit_code != 0);
    // The server's alert, not the client's own refusal to speak the old version.
    CHECK(r.output().find("alert protocol version") != std::string::npos);
    CHECK(r.output().find("no protocols available") == std::string::npos);
  }

  // TLS 1.2 without forward secrecy or AEAD (a legacy suite) is refused too.
  {
    const auto r = s_client(server.port(), {"-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"});
    INFO("openssl s_client -tls1_2 -cipher AES128-SHA:\n", r.output());
    CHECK(r.exit_code != 0);
  }

  for (const auto& [options, expected] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--tlsv1.2", "--tls-max", "1.2"}, "TLSv1.2"}, {{"--tlsv1.3"}, "TLSv1.3"}}) {
    CAPTURE(expected);
    const std::string id = new_log_id();
    auto args = options;
    args.insert(args.end(), {"-v", "--cacert", tls.pki.ca_cert.string()});
    const auto answer = curl_post(args, url(server.port()), tls.write_event(id));
    INFO("curl stderr:\n", answer.verbose);
    CHECK(answer.exit_code == 0);
    CHECK(answer.status == 200);
    CHECK(answer.verbose.find("SSL connection using " + expected) != std::string::npos);
    CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);
  }
}

TEST_CASE("hardening: HTTPS - plain HTTP to the TLS port gets no HTTP answer") {
  TlsServer tls;
  Server& server = *tls.server;
  INFO("server log tail:\n", server.log_tail());

  const std::string id = new_log_id();
  const auto started = Clock::now();
  const auto ex =
      raw_exchange(server.port(), serialize(post_event(event_with_log_id(id))), 1, true, 10s);
  INFO("received: ", ex.received.substr(0, 200));
  CHECK(ex.responses.empty());
  CHECK(ex.received.rfind("HTTP/", 0) == std::string::npos);
  CHECK_MESSAGE(ex.closed, "the server kept a plain-HTTP connection open on its TLS port");
  CHECK(ms_since(started) < 5000);

  const auto answer = curl_post({}, url(server.port(), "http"), tls.write_event(id));
  INFO("curl exit ", answer.exit_code, " stderr:\n", answer.verbose);
  CHECK(answer.exit_code != 0);
  CHECK(answer.status != 200);
  CHECK(journal_count(server, "events", "log_id = ?", {id}) == 0);
  // And HTTPS still works after that.
  const std::string id2 = new_log_id();
  CHECK(curl_post({"--cacert", tls.pki.ca_cert.string()}, url(server.port()), tls.write_event(id2))
            .status == 200);
}

TEST_CASE("hardening: HTTPS - a bad certificate or key file stops the start with its name") {
  TempDir dir;
  const TestPki pki = make_test_pki(dir.path());
  const fs::path garbage = dir.path() / "garbage.pem";
  write_file(garbage, "this is not a PEM file\n");
  const fs::path missing = dir.path() / "missing.key";

  struct Case {
    std::string what;
    fs::path cert;
    fs::path key;
    fs::path named;  ///< the file the message must name
  };
  const std::vector<Case> cases = {
      {"garbage certificate", garbage, pki.server_key, garbage},
      {"missing certificate", dir.path() / "missing.pem", pki.server_key,
       dir.path() / "missing.pem"},
      {"garbage key", pki.server_cert, garbage, garbage},
      {"missing key", pki.server_cert, missing, missing},
      {"key of another certificate", pki.server_cert, pki.other_key, pki.other_key},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const TempDir run;
    ServerConfig config;
    config.extra_members = tls_member(c.cert, c.key);
    const fs::path file = run.path() / "config.json";
    write_file(file, config_json(config, run.path() / "data"));
    const auto r = run_cli({"serve", "--config", file.string()}, {}, 15s);
    INFO("exit ", r.exit_code, " output:\n", r.output());
    CHECK_MESSAGE(r.exit_code != -1, "the server did not exit: it started serving");
    CHECK(r.exit_code != 0);
    CHECK(r.output().find(c.named.string()) != std::string::npos);
    CHECK(r.output().find("listening") == std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// Slow clients and the connection cap

TEST_CASE(
    "hardening: 1000 slow-loris connections are closed at the header timeout - others get 200 "
    "(needs rlimit: 2100 open files)") {
  constexpr std::size_t kLoris = 1000;
  const unsigned long nofile = raise_nofile_limit(65536);
  if (nofile < 2100) {
    return skip_test("RLIMIT_NOFILE hard limit is " + std::to_string(nofile) +
                     ", the test needs 2100");
  }
  TempDir dir;
  ServerConfig config;
  // 2.5 s, more than the 1 s between two bytes: a timeout that restarted with every byte read
  // would never fire, only one for the whole header does.
  config.extra_members = R"("limits": {"header_timeout_ms": 2500})";
  Server server(dir, config);
  std::string figures;  // reported at the end, without the log tail
  {
    INFO("server log tail:\n", server.log_tail());

    // Headers that never end: one byte a second.
    SlowLoris loris(
        server.port(), kLoris,
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "verification-token: test-token\r\nContent-Length: 2\r\n",
        1000ms, 8000ms);
    loris.connect();
    SlowLorisResult result;
    std::thread slow([&] { result = loris.run(); });

    // A normal client on its own keep-alive connection meanwhile.
    struct Post {
      int status;
      long long ms;
      std::size_t loris_open;
    };
    std::vector<Post> posts;
    std::vector<std::string> ids;
    std::string failure;
    try {
      HttpConnection normal(server.port());
      const auto deadline = Clock::now() + 10s;
      while ((posts.size() < 20 || loris.open_now() > 0) && Clock::now() < deadline) {
        const std::string id = new_log_id();
        const auto started = Clock::now();
        const auto r = normal.send(post_event(event_with_log_id(id)), 5s);
        posts.push_back({r.status, ms_since(started), loris.open_now()});
        if (r.status == 200) ids.push_back(id);
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
    slow.join();
    CHECK_MESSAGE(failure.empty(), "the normal client failed: ", failure);

    // Every slow connection was closed, at about the header timeout.
    std::vector<long long> closed;
    for (const auto& c : result.closed_after) {
      if (c) closed.push_back(c->count());
    }
    std::ranges::sort(closed);
    CHECK(result.connections == kLoris);
    CHECK_MESSAGE(closed.size() == kLoris, closed.size(), " of ", kLoris,
                  " slow connections were closed within 8 s");
    REQUIRE_FALSE(closed.empty());
    const auto pct = [&](double p) {
      return closed[std::min(closed.size() - 1,
                             static_cast<std::size_t>(p * static_cast<double>(closed.size())))];
    };
    figures = "slow-loris: " + std::to_string(kLoris) + " connections opened in " +
              std::to_string(result.connect_phase.count()) + " ms; closed after min " +
              std::to_string(closed.front()) + " ms, median " + std::to_string(pct(0.5)) +
              " ms, p99 " + std::to_string(pct(0.99)) + " ms, max " +
              std::to_string(closed.back()) + " ms; " + std::to_string(result.bytes_sent) +
              " bytes sent, " + std::to_string(result.bytes_received) + " received";
    CHECK_MESSAGE(closed.front() >= 2400, "a slow connection was closed before the header timeout");
    CHECK_MESSAGE(closed.back() <= 5000, "a slow connection stayed open past 5 s");

    // The normal client got 200s, promptly, while the slow ones were hanging on.
    const auto during =
        std::ranges::count_if(posts, [](const Post& p) { return p.loris_open > 0; });
    const auto ok = std::ranges::count_if(posts, [](const Post& p) { return p.status == 200; });
    long long slowest = 0;
    for (const auto& p : posts)
      slowest = std::max(slowest, p.ms);
    figures += "\nnormal client: " + std::to_string(posts.size()) + " POSTs, " +
               std::to_string(ok) + " got 200, " + std::to_string(during) +
               " answered while slow connections were open, slowest " + std::to_string(slowest) +
               " ms";
    CHECK(posts.size() >= 20);
    CHECK(ok == static_cast<long long>(posts.size()));
    CHECK(during >= 20);
    CHECK(slowest < 1000);
    for (const auto& id : ids) {
      CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);
    }
    CHECK(http(server.port(), get("/healthz")).status == 200);
  }
  MESSAGE(figures);
}

TEST_CASE("hardening: past max_connections a new connection gets 503 and is closed") {
  TempDir dir;
  ServerConfig config;
  config.extra_members = R"("limits": {"max_connections": 10})";
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());

  // Ten connections: one that asks for /metrics, nine that send nothing.
  auto watcher = std::make_unique<HttpConnection>(server.port());
  REQUIRE(watcher->send(get("/metrics")).status == 200);
  Sockets idle;
  for (int i = 0; i < 9; ++i)
    idle.add(connect_loopback(server.port()));
  double counted = -1;
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    counted = value_or_minus_one(watcher->send(get("/metrics")).body, "fbr_http_connections");
    if (counted == 10) break;
  }
  REQUIRE_MESSAGE(counted == 10, "fbr_http_connections is ", counted, ", expected 10");

  SUBCASE("the 11th sends nothing") {
    const auto started = Clock::now();
    const auto ex = raw_exchange(server.port(), {}, 1, true, 10s);
    const auto took = ms_since(started);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "received: ", ex.received.substr(0, 200));
    CHECK(ex.responses[0].status == 503);
    CHECK(ex.closed);
    CHECK(took < 3000);
  }
  SUBCASE("the 11th posts an event") {
    const std::string id = new_log_id();
    const auto started = Clock::now();
    const auto ex =
        raw_exchange(server.port(), serialize(post_event(event_with_log_id(id))), 1, true, 10s);
    const auto took = ms_since(started);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "received: ", ex.received.substr(0, 200));
    CHECK(ex.responses[0].status == 503);
    CHECK(ex.responses[0].header("Retry-After").has_value());
    CHECK(ex.closed);
    CHECK(took < 3000);
    CHECK(journal_count(server, "events", "log_id = ?", {id}) == 0);
  }

  // The ten already open are not harmed.
  CHECK(watcher->send(get("/healthz")).status == 200);

  // Once they close, new connections are served again.
  watcher.reset();
  idle.close_all();
  const std::string id = new_log_id();
  int status = 0;
  const auto until = Clock::now() + 5s;
  while (Clock::now() < until) {
    status = http(server.port(), post_event(event_with_log_id(id)), 5s).status;
    if (status != 503) break;
  }
  CHECK(status == 200);
  for (int i = 0; i < 10; ++i) {
    CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
  }
}

// ---------------------------------------------------------------------------------------------
// Request smuggling

TEST_CASE("hardening: request smuggling attempts get 400 and the connection is closed") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  struct Attempt {
    std::string what;
    std::string headers;  ///< framing headers, each ending in CRLF
    bool chunked_body;
  };
  const std::vector<Attempt> attempts = {
      {"Content-Length and Transfer-Encoding: chunked",
       "Content-Length: {N}\r\n"
       "Transfer-Encoding: chunked\r\n",
       true},
      {"Transfer-Encoding: chunked and Content-Length",
       "Transfer-Encoding: chunked\r\n"
       "Content-Length: {N}\r\n",
       true},
      {"two different Content-Length headers", "Content-Length: {N}\r\nContent-Length: {N+7}\r\n",
       false},
      {"two different Content-Length headers - longer first",
       "Content-Length: {N+7}\r\nContent-Length: {N}\r\n", false},
      {"Content-Length with two different values", "Content-Length: {N}, {N+7}\r\n", false},
      {"Transfer-Encoding: gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n", true},
      {"Transfer-Encoding: an unknown coding", "Transfer-Encoding: x-unknown\r\n", true},
      {"Transfer-Encoding: chunked, then an unknown coding",
       "Transfer-Encoding: chunked, x-unknown\r\n", true},
      {"Transfer-Encoding: chunked twice",
       "Transfer-Encoding: chunked\r\n"
       "Transfer-Encoding: chunked\r\n",
       true},
      {"Transfer-Encoding with a space before the colon", "Transfer-Encoding : chunked\r\n", true},
  };
  std::vector<std::string> ids;
  for (const auto& attempt : attempts) {
    CAPTURE(attempt.what);
    const std::string id = new_log_id();
    ids.push_back(id);
    const std::string body = event_with_log_id(id);
    std::string framing = attempt.headers;
    for (const auto& [placeholder, value] :
         {std::pair<std::string, std::size_t>{"{N}", body.size()}, {"{N+7}", body.size() + 7}}) {
      for (auto at = framing.find(placeholder); at != std::string::npos;
           at = framing.find(placeholder)) {
        framing.replace(at, placeholder.size(), std::to_string(value));
      }
    }
    // A second request rides behind the body: it must not be answered either.
    const std::string wire =
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nverification-token: test-token\r\n" +
        framing + "\r\n" + (attempt.chunked_body ? chunked(body) : body) +
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const auto ex = raw_exchange(server.port(), wire, 2, true, 3s);
    INFO("received:\n", ex.received.substr(0, 1000));
    REQUIRE(!ex.responses.empty());
    CHECK(ex.responses[0].status == 400);
    CHECK_MESSAGE(ex.responses.size() == 1, "the request behind it was answered too");
    CHECK_MESSAGE(ex.closed, "the connection was left open");
  }
  for (const auto& id : ids) {
    CHECK(journal_count(server, "events", "log_id = ?", {id}) == 0);
  }
  CHECK(journal_count(server, "events") == 0);
  CHECK(journal_count(server, "event_attempts") == 0);
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
}

// ---------------------------------------------------------------------------------------------
// Shutdown and reload

TEST_CASE("hardening: SIGTERM under a load of 32 connections - every 200 is journaled - exit 0") {
  constexpr int kClients = 32;
  TempDir dir;
  Server server(dir);
  std::string figures;  // reported at the end, without the log tail
  {
    INFO("server log tail:\n", server.log_tail());

    std::atomic<int> accepted{0};
    std::atomic<bool> signalled{false};
    std::atomic<int> after_signal{0};
    std::vector<std::vector<std::string>> got_200(kClients);
    std::vector<int> other(kClients, 0);
    std::vector<std::thread> clients;
    // Read once here: terminate() below resets the Server's port while late clients may start.
    const unsigned short port = server.port();
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        try {
          HttpConnection connection(port);
          for (;;) {
            const std::string id = new_log_id();
            const auto r = connection.send(post_event(event_with_log_id(id)), 15s);
            if (r.status == 200) {
              got_200[c].push_back(id);
              ++accepted;
              if (signalled) ++after_signal;
            } else {
              ++other[c];
            }
            if (!r.keep_alive) break;
          }
        } catch (const std::exception&) {
          // The server closed the connection (it is shutting down): this client is done.
        }
      });
    }
    const auto deadline = Clock::now() + 15s;
    while (accepted < 200 && Clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    REQUIRE_MESSAGE(accepted >= 200, "the load did not get going: ", accepted.load(), " accepted");

    const auto at_signal = accepted.load();
    signalled = true;
    const auto started = Clock::now();
    const int code = server.terminate(15s);  // SIGTERM, then SIGKILL after 15 s
    const auto drain_ms = ms_since(started);
    for (auto& t : clients)
      t.join();

    figures = "SIGTERM under load: " + std::to_string(at_signal) + " accepted before it, " +
              std::to_string(after_signal.load()) + " answered 200 after it, exit " +
              std::to_string(code) + " after " + std::to_string(drain_ms) + " ms";
    CHECK(code == 0);
    CHECK(drain_ms <= 11000);
    CHECK(server.wait_for_line({"shutdown", "SIGTERM"}, 1s).has_value());
    CHECK(server.wait_for_line({"stopped"}, 1s).has_value());
    CHECK(count_in_log(server, "drain_timeout") == 0);
    CHECK(std::accumulate(other.begin(), other.end(), 0) == 0);

    server.start();
    const Journal journal(server.journal_path());
    std::set<std::string> journaled;
    for (const auto& row : journal.query("SELECT log_id FROM events")) {
      if (row.at(0)) journaled.insert(*row.at(0));
    }
    std::size_t total = 0;
    std::vector<std::string> lost;
    for (const auto& ids : got_200) {
      for (const auto& id : ids) {
        ++total;
        if (!journaled.contains(id)) lost.push_back(id);
      }
    }
    CHECK(total == static_cast<std::size_t>(accepted.load()));
    CHECK_MESSAGE(lost.empty(), lost.size(), " of ", total,
                  " events answered 200 are not journaled",
                  lost.empty() ? "" : ", e.g. " + lost.front());
    CHECK(http(server.port(), get("/healthz")).status == 200);
  }
  MESSAGE(figures);
}

TEST_CASE(
    "hardening: SIGHUP with a new token - new works - removed gets 401 - no connection drop") {
  TempDir dir;
  ServerConfig config;
  config.tokens = std::vector<std::string>{"old-token"};
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());

  HttpConnection kept(server.port());
  const unsigned short client_port = kept.local_port();
  const std::string before = new_log_id();
  REQUIRE(kept.send(post_event(event_with_log_id(before), "old-token")).status == 200);

  ServerConfig next;
  next.tokens = std::vector<std::string>{"new-token"};
  write_file(server.config_path(), config_on_port(next, server));
  sighup(server);
  const auto reloaded = server.wait_for_line({"reloaded"}, 5s);
  REQUIRE_MESSAGE(reloaded.has_value(), "no `reloaded` line after SIGHUP");
  CHECK(reloaded->find("tokens=1") != std::string::npos);

  // The connection opened before the reload goes on, on the same socket, with the new token.
  const std::string after = new_log_id();
  const auto r = kept.send(post_event(event_with_log_id(after), "new-token"), 5s);
  CHECK(r.status == 200);
  CHECK(r.keep_alive);
  CHECK(kept.local_port() == client_port);

  const std::string refused = new_log_id();
  CHECK(http(server.port(), post_event(event_with_log_id(refused), "old-token")).status == 401);
  const std::string fresh = new_log_id();
  CHECK(http(server.port(), post_event(event_with_log_id(fresh), "new-token")).status == 200);
  CHECK(kept.send(post_event(event_with_log_id(new_log_id()), "new-token"), 5s).status == 200);
  CHECK(kept.local_port() == client_port);

  CHECK(journal_count(server, "events", "log_id = ?", {before}) == 1);
  CHECK(journal_count(server, "events", "log_id = ?", {after}) == 1);
  CHECK(journal_count(server, "events", "log_id = ?", {fresh}) == 1);
  CHECK(journal_count(server, "events", "log_id = ?", {refused}) == 0);
  CHECK(count_in_log(server, "reload_refused") == 0);
}

TEST_CASE("hardening: SIGHUP with a broken config is refused and the old config still serves") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  HttpConnection kept(server.port());
  REQUIRE(kept.send(post_event(event_with_log_id(new_log_id()))).status == 200);

  struct Broken {
    std::string what;
    std::string text;
    std::string named;  ///< what the refusal must mention (empty: anything)
  };
  ServerConfig unknown_key;
  unknown_key.tokens = std::vector<std::string>{"other-token"};
  unknown_key.extra_members = R"("no_such_key": true)";
  ServerConfig no_tokens;
  no_tokens.tokens = std::vector<std::string>{};
  const std::vector<Broken> broken = {
      {"not JSON", "{ \"listen\": this is not JSON", ""},
      {"an unknown key", config_on_port(unknown_key, server), "no_such_key"},
      {"no verification token", config_on_port(no_tokens, server), "verification_tokens"},
  };
  std::size_t refusals = 0;
  for (const auto& b : broken) {
    CAPTURE(b.what);
    write_file(server.config_path(), b.text);
    sighup(server);
    ++refusals;
    REQUIRE_MESSAGE(wait_for_count(server, "reload_refused", refusals, 5s),
                    "no `reload_refused` line");
    const auto line = server.wait_for_line({"reload_refused", b.named}, 1s);
    CHECK_MESSAGE(line.has_value(), "the refusal does not mention ", b.named);
    CHECK(kept.send(post_event(event_with_log_id(new_log_id())), 5s).status == 200);
    CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
    CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()), "other-token")).status ==
          401);
  }
  CHECK(count_in_log(server, "reloaded") == 0);

  // A good config after the refusals is taken.
  ServerConfig good;
  good.tokens = std::vector<std::string>{"test-token", "other-token"};
  write_file(server.config_path(), config_on_port(good, server));
  sighup(server);
  REQUIRE(server.wait_for_line({"reloaded"}, 5s).has_value());
  CHECK(kept.send(post_event(event_with_log_id(new_log_id()), "other-token"), 5s).status == 200);
}

// ---------------------------------------------------------------------------------------------
// Metrics

TEST_CASE("hardening: /metrics is valid Prometheus text and its counters move") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  const std::string first = new_log_id();
  CHECK(http(server.port(), post_event(event_with_log_id(first))).status == 200);
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
  const auto duplicate = http(server.port(), post_event(event_with_log_id(first)));
  CHECK(duplicate.status == 200);
  CHECK(duplicate.body.find("\"duplicate\":true") != std::string::npos);
  CHECK(http(server.port(), post_event(fixture("invalid-several-errors.json"))).status == 400);
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()), "wrong")).status == 401);

  // The request counters are updated once an answer is written: poll until they caught up.
  std::string text;
  const auto counted = [&] {
    return value_or_minus_one(text, "fbr_events_total", R"(result="accepted")") == 3 &&
           value_or_minus_one(text, "fbr_events_total", R"(result="duplicate")") == 1 &&
           value_or_minus_one(text, "fbr_events_total", R"(result="invalid")") == 1 &&
           value_or_minus_one(text, "fbr_events_total", R"(result="unauthorized")") == 1 &&
           value_or_minus_one(text, "fbr_http_requests_total", R"(code="200")") >= 4 &&
           value_or_minus_one(text, "fbr_http_requests_total", R"(code="401")") >= 1;
  };
  const auto deadline = Clock::now() + 5s;
  HttpResponse response;
  do {
    response = http(server.port(), get("/metrics"), 10s);
    text = response.body;
  } while (!counted() && Clock::now() < deadline);
  INFO("/metrics:\n", text);
  REQUIRE(response.status == 200);
  CHECK(response.header("Content-Type").value_or("").rfind("text/plain", 0) == 0);

  const auto problems = exposition_problems(text);
  for (const auto& p : problems)
    FAIL_CHECK(p);
  CHECK(problems.empty());
  if (have_program("promtool")) {
    const auto r = run_process({"promtool", "check", "metrics"}, text, 30s);
    INFO("promtool check metrics:\n", r.output());
    CHECK(r.exit_code == 0);
  } else {
    MESSAGE("promtool is not installed: the exposition was checked by the test's own parser");
  }

  CHECK(value_or_minus_one(text, "fbr_events_total", R"(result="accepted")") == 3);
  CHECK(value_or_minus_one(text, "fbr_events_total", R"(result="duplicate")") == 1);
  CHECK(value_or_minus_one(text, "fbr_events_total", R"(result="invalid")") == 1);
  CHECK(value_or_minus_one(text, "fbr_events_total", R"(result="unauthorized")") == 1);
  CHECK(value_or_minus_one(text, "fbr_events_total", R"(result="quarantined")") == 0);
  CHECK(value_or_minus_one(text, "fbr_events_total", R"(result="unavailable")") == 0);
  CHECK(value_or_minus_one(text, "fbr_http_requests_total", R"(code="200")") >= 4);
  CHECK(value_or_minus_one(text, "fbr_http_requests_total", R"(code="400")") >= 1);
  CHECK(value_or_minus_one(text, "fbr_http_requests_total", R"(code="401")") >= 1);
  CHECK(value_or_minus_one(text, "fbr_journal_commit_duration_seconds_count") >= 4);
  CHECK(value_or_minus_one(text, "fbr_journal_commit_duration_seconds_bucket", R"(le="+Inf")") >=
        4);
  CHECK(value_or_minus_one(text, "fbr_http_request_duration_seconds_count") >= 6);
  CHECK(value_or_minus_one(text, "fbr_http_connections") >= 1);
  CHECK(value_or_minus_one(text, "fbr_deliveries_waiting") == 0);
}

TEST_CASE("hardening: the exposition checker finds what promtool would reject") {
  const std::string good =
      "# HELP a_total A counter.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n"
      "# HELP h A histogram.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\n"
      "h_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 2.5\nh_count 4\n";
  CHECK(exposition_problems(good).empty());
  CHECK(metric_value(good, "a_total", R"(x="1")") == 2);
  CHECK(metric_value(good, "h_bucket", R"(le="+Inf")") == 4);

  const std::vector<std::pair<const char*, std::string>> bad = {
      {"no TYPE", "# HELP b B.\nb 1\n"},
      {"no HELP", "# TYPE b gauge\nb 1\n"},
      {"TYPE after samples", "# HELP b B.\nb 1\n# TYPE b gauge\n"},
      {"counter without _total", "# HELP c C.\n# TYPE c counter\nc 1\n"},
      {"bad value", "# HELP b B.\n# TYPE b gauge\nb one\n"},
      {"bad label", "# HELP b B.\n# TYPE b gauge\nb{x=1} 1\n"},
      {"split family",
       "# HELP b B.\n# TYPE b gauge\nb{x=\"1\"} 1\n# HELP d D.\n# TYPE d gauge\nd 1\n"
       "b{x=\"2\"} 1\n"},
      {"buckets not cumulative",
       "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n"
       "h_sum 1\nh_count 2\n"},
      {"no +Inf bucket",
       "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_sum 1\n"
       "h_count 3\n"},
      {"+Inf differs from _count",
       "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 4\n"},
      {"no _count", "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\n"},
  };
  for (const auto& [what, text] : bad) {
    CAPTURE(what);
    CHECK_FALSE(exposition_problems(text).empty());
  }
}
