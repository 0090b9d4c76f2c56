// The guarantees a crash test cannot see, made visible: every 200 comes after an fsync of the
// journal (an LD_PRELOAD shim records the order of syncs and answers: kill -9 keeps the page cache,
// so only the order of system calls shows a missing fsync), requests and deliveries in flight at
// SIGTERM finish, and /readyz tracks the free-space floor. Each test here is killed by a mutant in
// scripts/mutants.txt (make test-mutants).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/hardening_support.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/nats_support.hpp"

using namespace fbr::itest;
using dispatch::events_json;
using dispatch::file_lines;
using dispatch::json_string;
using dispatch::poll_until;
using dispatch::write_script;
using hardening::connect_loopback;
using hardening::Sockets;
using hardening::wait_closed;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// The order of syncs and answers (tests/preload/sync_order.cpp)

/// What the shim recorded: "sync <path>", "recv <fd>", "send200 <fd>", in order.
struct OrderCheck {
  std::size_t answers = 0;              ///< send200 lines
  std::size_t wal_syncs = 0;            ///< syncs of the journal's WAL
  std::vector<std::string> violations;  ///< a 200 with no WAL sync since its request's last read
};

OrderCheck check_order(const fs::path& log, const fs::path& wal) {
  OrderCheck out;
  std::istringstream lines(read_file(log));
  // Per socket fd: has the WAL been synced since the last read from it?
  std::vector<int> synced_since_read;  // -1: no read yet
  std::size_t line_no = 0;
  for (std::string line; std::getline(lines, line);) {
    ++line_no;
    const auto space = line.find(' ');
    const std::string kind = line.substr(0, space);
    const std::string arg = space == std::string::npos ? std::string() : line.substr(space + 1);
    if (kind == "sync") {
      if (arg != wal.string()) continue;
      ++out.wal_syncs;
      for (auto& s : synced_since_read) {
        if (s == 0) s = 1;
      }
      continue;
    }
    const auto fd = static_cast<std::size_t>(std::stoul(arg));
    if (synced_since_read.size() <= fd) synced_since_read.resize(fd + 1, -1);
    if (kind == "recv") {
      synced_since_read[fd] = 0;
    } else if (kind == "send200") {
      ++out.answers;
      if (synced_since_read[fd] != 1) {
        out.violations.push_back("line " + std::to_string(line_no) + ": 200 on fd " + arg +
                                 (synced_since_read[fd] < 0
                                      ? " before any read from it"
                                      : " with no WAL sync since its request"));
      }
    }
  }
  return out;
}

/// The server process's environment for the shim. Under ASan the shim is loaded ahead of the
/// sanitizer runtime, which ASan refuses unless told not to check.
std::vector<std::string> shim_environment(const fs::path& log) {
  const char* asan = std::getenv("ASAN_OPTIONS");
  return {
      std::string("LD_PRELOAD=") + FBR_SYNC_ORDER_SHIM, "SYNC_ORDER_LOG=" + log.string(),
      std::string("ASAN_OPTIONS=") + (asan != nullptr ? asan : "") + ":verify_asan_link_order=0"};
}

// ---------------------------------------------------------------------------------------------
// Raw clients for the drain test

/// Reads from `fd` into `received` until it contains `needle`; false at the deadline or on EOF.
bool read_until(int fd, std::string& received, std::string_view needle,
                std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  while (received.find(needle) == std::string::npos) {
    if (Clock::now() >= deadline) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    timeval tv{static_cast<time_t>(left.count() / 1000),
               static_cast<suseconds_t>((left.count() % 1000) * 1000 + 1)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return false;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  return true;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// The index of the first log line that contains every one of `needles`, or -1.
long first_event(const std::vector<std::string>& lines, const std::vector<std::string>& needles) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    bool all = true;
    for (const auto& needle : needles)
      all = all && lines[i].find(needle) != std::string::npos;
    if (all) return static_cast<long>(i);
  }
  return -1;
}

/// The service's last line: `... stopped` (and not dispatcher_stopped).
long stopped_line(const std::vector<std::string>& lines) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    if (l.size() >= 8 && l.compare(l.size() - 8, 8, " stopped") == 0) return static_cast<long>(i);
  }
  return -1;
}

std::string exec_handler(const std::string& name, const fs::path& script) {
  return R"({"name": )" + json_string(name) + R"(, "type": "exec", "command": ["/bin/sh", )" +
         json_string(script.string()) + "]}";
}

/// A handler script that marks its start (started.<Log ID>), sleeps 1 s, then appends its Log ID
/// to `out`.
void write_slow_script(const fs::path& script, const fs::path& dir, const fs::path& out) {
  write_script(script, "touch '" + dir.string() + "/started.'\"$FBR_LOG_ID\"\nsleep 1\necho " +
                           "\"$FBR_LOG_ID\" >> '" + out.string() + "'\n");
}

const rapidjson::Value* event_by_log_id(const rapidjson::Document& events, const std::string& id) {
  for (const auto& e : events.GetArray()) {
    if (e.HasMember("logId") && e["logId"].IsString() && id == e["logId"].GetString()) return &e;
  }
  return nullptr;
}

std::size_t free_bytes(const fs::path& dir) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) throw std::runtime_error("statvfs " + dir.string());
  return static_cast<std::size_t>(fs.f_bavail) * fs.f_frsize;
}

/// Writes `bytes` into `file` (a filler that leaves the rest of the file system free).
void write_filler(const fs::path& file, std::size_t bytes) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("open " + file.string());
  const std::string chunk(1 << 16, 'f');
  std::size_t left = bytes;
  while (left > 0) {
    const ssize_t n = ::write(fd, chunk.data(), std::min(left, chunk.size()));
    if (n <= 0) break;
    left -= static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (left != 0) throw std::runtime_error("filler short of " + std::to_string(left) + " bytes");
}

int readyz(const Server& server) {
  return http(server.port(), get("/readyz")).status;
}

bool readyz_becomes(const Server& server, int status) {
  return poll_until([&] { return readyz(server) == status; }, 10s);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Durability. Only the SQLite journal: with the NATS backend the durability point is JetStream's
// ack (the stream's own fsync, in nats-server), not a sync in this process.

TEST_CASE(
    "guarantees: every 200 is sent after an fsync of the SQLite journal's WAL that followed its "
    "request - sequential and concurrent (LD_PRELOAD shim)") {
  TempDir dir;
  const fs::path order = dir.path() / "order.log";
  ServerConfig config;
  config.environment = shim_environment(order);
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());

  // One at a time on new connections, then 8 clients at once on keep-alive connections (group
  // commit: one sync may cover several answers, but none may come before it).
  constexpr int kSequential = 20;
  constexpr int kClients = 8;
  constexpr int kPerClient = 10;
  int ok = 0;
  for (int i = 0; i < kSequential; ++i)
    ok += http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200 ? 1 : 0;
  std::atomic<int> concurrent_ok{0};
  {
    std::vector<std::jthread> clients;
    const unsigned short port = server.port();
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&] {
        try {
          HttpConnection connection(port);
          for (int i = 0; i < kPerClient; ++i) {
            if (connection.send(post_event(event_with_log_id(new_log_id())), 10s).status == 200) {
              ++concurrent_ok;
            }
          }
        } catch (const std::exception&) {  // counted below: fewer than kPerClient 200s
        }
      });
    }
  }
  REQUIRE(ok == kSequential);
  REQUIRE(concurrent_ok == kClients * kPerClient);
  CHECK(server.terminate() == 0);

  const auto check = check_order(order, server.data_dir() / "journal.sqlite-wal");
  MESSAGE("sync order: ", check.answers, " answers 200, ", check.wal_syncs, " WAL syncs");
  CHECK(check.answers == static_cast<std::size_t>(kSequential + kClients * kPerClient));
  CHECK(check.wal_syncs >= 1);
  CHECK_MESSAGE(check.violations.empty(), check.violations.size(), " 200s before their sync, e.g. ",
                check.violations.empty() ? std::string() : check.violations.front());
}

TEST_CASE("guarantees: the sync-order check sees a 200 sent before the WAL sync") {
  // The checker itself, on a hand-written record: it must fail where the order is wrong.
  TempDir dir;
  const fs::path log = dir.path() / "order.log";
  const fs::path wal = "/d/journal.sqlite-wal";
  write_file(log,
             "recv 7\nsync /d/journal.sqlite-wal\nsend200 7\n"                   // good
             "recv 7\nsend200 7\nsync /d/journal.sqlite-wal\n"                   // 200 first
             "sync /d/journal.sqlite-wal\nrecv 8\nsync /d/other\nsend200 8\n");  // wrong file
  const auto check = check_order(log, wal);
  CHECK(check.answers == 3);
  CHECK(check.wal_syncs == 3);
  CHECK(check.violations.size() == 2);
}

// ---------------------------------------------------------------------------------------------
// Drain

TEST_CASE(
    "guarantees: requests half sent at SIGTERM get their whole 200 after it and are journaled") {
  constexpr int kClients = 6;
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  Sockets sockets;
  std::vector<int> fds;
  std::vector<std::string> ids, bodies, received(kClients);
  for (int c = 0; c < kClients; ++c) {
    ids.push_back(new_log_id());
    bodies.push_back(event_with_log_id(ids.back()));
    const int fd = connect_loopback(server.port());
    sockets.add(fd);
    fds.push_back(fd);
    // Expect: 100-continue: the 100 proves the server read the header, so the request is in
    // flight when the signal comes.
    const std::string head =
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nverification-token: test-token\r\n"
        "Expect: 100-continue\r\nContent-Length: " +
        std::to_string(bodies.back().size()) + "\r\n\r\n";
    REQUIRE(send_all(fd, head));
    REQUIRE_MESSAGE(read_until(fd, received[c], "\r\n\r\n", 5s), "no 100 Continue: ", received[c]);
    REQUIRE(received[c].rfind("HTTP/1.1 100", 0) == 0);
    received[c].clear();
    REQUIRE(send_all(fd, std::string_view(bodies.back()).substr(0, bodies.back().size() / 2)));
  }

  REQUIRE(::kill(server.pid(), SIGTERM) == 0);
  const auto shutdown = server.wait_for_line({"shutdown", "SIGTERM"}, 5s);
  REQUIRE_MESSAGE(shutdown.has_value(), "no shutdown line after SIGTERM");
  CHECK(shutdown->find("in_flight=" + std::to_string(kClients)) != std::string::npos);

  // The rest of each body, after the signal: each client's last exchange must be a whole answer.
  for (int c = 0; c < kClients; ++c) {
    CHECK(send_all(fds[c], std::string_view(bodies[c]).substr(bodies[c].size() / 2)));
  }
  for (int c = 0; c < kClients; ++c) {
    CHECK(wait_closed(fds[c], 10s, &received[c]));
    const auto responses = parse_responses(received[c], true);
    INFO("client ", c, " received: ", received[c]);
    REQUIRE(responses.size() == 1);
    CHECK(responses[0].status == 200);
    CHECK(json_raw(parse_json(responses[0].body), "/duplicate") == "false");
  }
  CHECK(server.wait_exit(15s) == 0);
  for (const auto& id : ids)
    CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);
}

TEST_CASE(
    "guarantees: SIGTERM during a delivery with the SQLite journal - its outcome is recorded "
    "done - the queued ones stay pending") {
  TempDir dir;
  const fs::path out = dir.path() / "out.txt";
  const fs::path script = dir.path() / "slow.sh";
  write_slow_script(script, dir.path(), out);
  ServerConfig config;
  // One worker: the first event runs, the other two wait their turn.
  config.extra_members =
      R"("dispatch": {"concurrency": 1}, "handlers": [)" + exec_handler("slow", script) + "]";
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(new_log_id());
    REQUIRE(http(server.port(), post_event(event_with_log_id(ids.back()))).status == 200);
  }
  std::string running;
  REQUIRE(poll_until(
      [&] {
        for (const auto& id : ids) {
          if (fs::exists(dir.path() / ("started." + id))) running = id;
        }
        return !running.empty();
      },
      10s));
  CHECK(server.terminate(15s) == 0);

  // After the service exited, `events` (the journal) says: the one that ran is done, once; the
  // others never started and are pending with no attempt (not running, failed or dead).
  CHECK(file_lines(out) == std::vector<std::string>{running});
  const auto events = events_json(server);
  for (const auto& id : ids) {
    const auto* event = event_by_log_id(events, id);
    REQUIRE_MESSAGE(event != nullptr, id, " not listed by events");
    const std::string state = json_str(*event, "/deliveries/0/state");
    const std::string attempts = json_raw(*event, "/deliveries/0/attempts");
    INFO(id, ": ", state, " after ", attempts, " attempts");
    if (id == running) {
      CHECK(state == "done");
      CHECK(attempts == "1");
    } else {
      CHECK(state == "pending");
      CHECK(attempts == "0");
    }
  }
}

TEST_CASE(
    "guarantees: SIGTERM during a NATS delivery - its outcome is logged before `stopped` and it "
    "does not run again") {
  if (auto why = NatsCluster::unavailable()) return skip_test(*why);
  NatsCluster cluster(1);
  TempDir dir;
  const fs::path out = dir.path() / "out.txt";
  const fs::path script = dir.path() / "slow.sh";
  write_slow_script(script, dir.path(), out);
  ServerConfig config;
  config.extra_members = R"("journal": {"backend": "nats", "nats": {"servers": )" +
                         cluster.servers_json() +
                         R"(, "stream": "FBR_G", "subject": "fbr.g"}}, "handlers": [)" +
                         exec_handler("slow", script) + "]";
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());
  REQUIRE(server.wait_for_line({"dispatcher_consumer_ready", "consumer=fbr-slow "}, 20s));
  const std::string id = new_log_id();
  REQUIRE(http(server.port(), post_event(event_with_log_id(id))).status == 200);
  REQUIRE(poll_until([&] { return fs::exists(dir.path() / ("started." + id)); }, 20s));
  CHECK(server.terminate(15s) == 0);

  const auto lines = server.log_lines();
  const long outcome = first_event(lines, {"delivery ", "log_id=" + id, "outcome=done"});
  const long stopped = stopped_line(lines);
  CHECK_MESSAGE(outcome >= 0, "no `delivery ... outcome=done` line for the running delivery");
  CHECK(stopped >= 0);
  CHECK_MESSAGE(outcome < stopped, "the delivery's outcome came after `stopped`");
  CHECK(file_lines(out) == std::vector<std::string>{id});

  // Its ack went out before the exit: the restarted receiver has nothing to run again.
  server.start();
  REQUIRE(server.wait_for_line({"dispatcher_consumer_ready", "consumer=fbr-slow "}, 20s));
  NatsProbe probe(cluster.urls());
  CHECK(poll_until(
      [&] {
        const auto state = probe.consumer("FBR_G", "fbr-slow");
        return state && state->num_pending == 0 && state->num_ack_pending == 0;
      },
      10s));
  CHECK(file_lines(out) == std::vector<std::string>{id});
}

// ---------------------------------------------------------------------------------------------
// Readiness

TEST_CASE(
    "guarantees: /readyz is 503 below 1 MiB free and on a full disk - 200 again after (needs "
    "root: tmpfs)") {
  TempDir dir;
  std::string why;
  const auto mount = TmpfsMount::mount(dir.path() / "data", "size=8m,mode=0700", why);
  if (!mount) return skip_test("cannot mount a tmpfs here (" + why + ")");
  Server server(dir);  // declared after the mount: stopped before it is unmounted
  INFO("server log tail:\n", server.log_tail());
  REQUIRE(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
  REQUIRE(readyz(server) == 200);

  // Below the floor, with room left for commits: not ready, though a commit would still fit.
  const fs::path filler = server.data_dir() / "filler";
  const std::size_t free_now = free_bytes(server.data_dir());
  REQUIRE(free_now > 2 * 1024 * 1024);
  write_filler(filler, free_now - 512 * 1024);
  const std::size_t below = free_bytes(server.data_dir());
  INFO("free below the floor: ", below);
  CHECK(below < 1024 * 1024);
  CHECK(below > 0);
  CHECK(readyz(server) == 503);
  fs::remove(filler);
  CHECK(readyz_becomes(server, 200));

  // Full, before any commit failed: the free-space check alone must say not ready.
  fill_file_system(filler);
  CHECK(free_bytes(server.data_dir()) == 0);
  CHECK(readyz(server) == 503);
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 503);
  CHECK(readyz(server) == 503);
  fs::remove(filler);
  CHECK(readyz_becomes(server, 200));
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
}
