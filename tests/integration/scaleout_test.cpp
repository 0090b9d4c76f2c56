// Scale-out (issue 8): two receivers behind HAProxy, journaling to a 3-node JetStream cluster
// with a replicated stream, under 32 connections of load. The test plays Redox: every event is
// re-sent until it gets a 200 (a 502 from the proxy or a 503 from a receiver is retried), some
// are sent to both receivers on purpose, and mid-load one NATS node and one receiver are killed
// with SIGKILL. Then: every acknowledged event is in the stream exactly once, every delivery is
// done (both handlers' durable consumers drained, no dead letters), each handler ran each event
// at least once, and the file handler's output holds each event once.
#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/nats_support.hpp"

namespace fbr::itest {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using dispatch::json_string;

constexpr const char* kStream = "FBR_SCALE";
constexpr const char* kSubject = "fbr.scale";

/// HAProxy (Debian's package) on a free loopback port in front of `backends`, round robin, with
/// /readyz health checks every 200 ms, so a dead receiver leaves the pool within a second.
class Haproxy {
 public:
  static std::optional<std::string> unavailable() {
    if (!fs::exists("/usr/sbin/haproxy"))
      return "haproxy is not installed (scripts/install-deps.sh)";
    return std::nullopt;
  }

  Haproxy(const fs::path& dir, const std::vector<unsigned short>& backends) {
    port_ = free_port();
    std::string conf =
        "global\n  maxconn 2000\n"
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n"
        "  timeout server 30s\n  retries 3\n  option redispatch\n"
        "frontend receivers\n  bind 127.0.0.1:" +
        std::to_string(port_) +
        "\n  default_backend receivers\n"
        "backend receivers\n  balance roundrobin\n  option httpchk GET /readyz\n"
        "  http-check expect status 200\n";
    for (std::size_t i = 0; i < backends.size(); ++i) {
      conf += "  server r" + std::to_string(i) + " 127.0.0.1:" + std::to_string(backends[i]) +
              " check inter 200ms fall 2 rise 1\n";
    }
    write_file(dir / "haproxy.cfg", conf);
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/sbin/haproxy", "-db", "-f", (dir / "haproxy.cfg").string()},
        dir / "haproxy.log");
    const auto deadline = Clock::now() + 10s;
    while (!accepts_connections(port_)) {
      if (!process_->running() || Clock::now() > deadline)
        throw std::runtime_error("haproxy did not start: " + process_->log());
      std::this_thread::sleep_for(10ms);
    }
  }
  unsigned short port() const { return port_; }

 private:
  unsigned short port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

std::string receiver_members(const NatsCluster& cluster, const fs::path& out_dir) {
  return R"("journal": {"backend": "nats", "nats": {"servers": )" + cluster.servers_json() +
         R"(, "stream": ")" + kStream + R"(", "subject": ")" + kSubject +
         R"(", "replicas": 3}},
  "retry": {"max_attempts": 10, "initial_backoff_ms": 200, "max_backoff_ms": 1000},
  "dispatch": {"concurrency": 4},
  "handlers": [
    {"name": "files", "type": "file", "dir": )" +
         json_string((out_dir / "files").string()) + R"(},
    {"name": "runs", "type": "exec", "command": ["/bin/sh", "-c", "echo \"$FBR_LOG_ID\" >> )" +
         (out_dir / "runs.txt").string() + R"("]}
  ])";
}

/// `f()`, tried again while it throws (a JetStream API call may time out while the cluster elects
/// a new leader after a node died), until the deadline.
template <typename F>
auto retrying(F f, std::chrono::seconds timeout = 30s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      return f();
    } catch (const std::exception&) {
      if (Clock::now() > deadline) throw;
      std::this_thread::sleep_for(200ms);
    }
  }
}

bool ready(unsigned short port) {
  try {
    return http(port, get("/readyz"), 2s).status == 200;
  } catch (const std::exception&) {
    return false;
  }
}

bool wait_ready(const Server& server, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (ready(server.port())) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

/// What the load saw: the Log IDs that got a 200, and how many of those 200s said duplicate.
struct LoadResult {
  std::mutex mutex;
  std::set<std::string> acknowledged;
  std::atomic<int> duplicates{0};
  std::atomic<int> not_ok{0};  ///< 502/503/transport errors, each retried
  std::atomic<int> gave_up{0};
};

/// Sends `per_connection` distinct events on each of `connections` keep-alive connections to
/// `port`, each one re-sent until it gets a 200 (reconnecting after transport errors).
void run_load(unsigned short port, int connections, int per_connection, LoadResult& result) {
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, port] {
      std::unique_ptr<HttpConnection> conn;
      for (int i = 0; i < per_connection; ++i) {
        const std::string log_id = new_log_id();
        const std::string body = event_with_log_id(log_id);
        const auto deadline = Clock::now() + 60s;
        bool acked = false;
        while (!acked && Clock::now() < deadline) {
          try {
            if (!conn) conn = std::make_unique<HttpConnection>(port);
            auto r = conn->send(post_event(body), 20s);
            if (r.status == 200) {
              acked = true;
              if (json_raw(parse_json(r.body), "/duplicate") == "true") ++result.duplicates;
              std::lock_guard lock(result.mutex);
              result.acknowledged.insert(log_id);
            } else {
              ++result.not_ok;
              if (!r.keep_alive) conn.reset();
              std::this_thread::sleep_for(20ms);
            }
          } catch (const std::exception&) {
            ++result.not_ok;
            conn.reset();
            std::this_thread::sleep_for(20ms);
          }
        }
        if (!acked) ++result.gave_up;
      }
    });
  }
  for (auto& t : threads)
    t.join();
}

}  // namespace

TEST_CASE(
    "scale-out: two receivers on a 3-node JetStream cluster lose nothing when a node and a "
    "receiver die") {
  if (auto why = NatsCluster::unavailable()) return skip_test(*why);
  if (auto why = Haproxy::unavailable()) return skip_test(*why);
  NatsCluster cluster(3);
  TempDir out, dir_a, dir_b, dir_proxy;
  ServerConfig config;
  config.extra_members = receiver_members(cluster, out.path());
  Server a(dir_a, config);
  Server b(dir_b, config);
  REQUIRE_MESSAGE(wait_ready(a, 30s), a.log_tail());
  REQUIRE_MESSAGE(wait_ready(b, 30s), b.log_tail());
  NatsProbe probe(cluster.urls());
  CHECK(probe.stream_replicas(kStream) == 3);

  // Redox may retry an event to another instance: JetStream's de-duplication says so.
  std::set<std::string> sent_twice;
  for (int i = 0; i < 10; ++i) {
    const std::string log_id = new_log_id();
    const std::string body = event_with_log_id(log_id);
    auto first = http(a.port(), post_event(body));
    REQUIRE_MESSAGE(first.status == 200, first.body, a.log_tail());
    CHECK(json_raw(parse_json(first.body), "/duplicate") == "false");
    auto second = http(b.port(), post_event(body));
    REQUIRE_MESSAGE(second.status == 200, second.body, b.log_tail());
    CHECK(json_raw(parse_json(second.body), "/duplicate") == "true");
    sent_twice.insert(log_id);
  }

  Haproxy proxy(dir_proxy.path(), {a.port(), b.port()});
  LoadResult load;
  std::thread loader([&] { run_load(proxy.port(), 32, 40, load); });
  // Mid-load, once a third of the events are in: one NATS node and one receiver die.
  const auto kill_deadline = Clock::now() + 120s;
  for (;;) {
    {
      std::lock_guard lock(load.mutex);
      if (load.acknowledged.size() >= 32 * 40 / 3) break;
    }
    if (Clock::now() > kill_deadline) break;
    std::this_thread::sleep_for(5ms);
  }
  std::size_t acknowledged_at_kill = 0;
  {
    std::lock_guard lock(load.mutex);
    acknowledged_at_kill = load.acknowledged.size();
  }
  cluster.kill(1);
  b.kill9();
  loader.join();
  CHECK(acknowledged_at_kill < 32 * 40);  // the kills happened mid-load

  CHECK(load.gave_up == 0);
  std::set<std::string> expected = load.acknowledged;
  expected.insert(sent_twice.begin(), sent_twice.end());
  REQUIRE(expected.size() == 32 * 40 + 10);
  MESSAGE("load: " << load.acknowledged.size() << " events acknowledged (" << acknowledged_at_kill
                   << " before the kills), " << load.not_ok.load()
                   << " answers retried (502/503/transport), " << load.duplicates.load()
                   << " retries answered duplicate");

  // Every acknowledged event is in the stream exactly once; nothing else is.
  std::map<std::string, int> in_stream;
  for (const auto& m : retrying([&] { return probe.messages(kStream, kSubject); }))
    ++in_stream[m.headers.count("Fbr-Log-Id") ? m.headers.at("Fbr-Log-Id") : "<no Fbr-Log-Id>"];
  int missing = 0, repeated = 0;
  for (const auto& id : expected) {
    const auto it = in_stream.find(id);
    if (it == in_stream.end())
      ++missing;
    else if (it->second != 1)
      ++repeated;
  }
  CHECK(missing == 0);
  CHECK(repeated == 0);
  CHECK(in_stream.size() == expected.size());

  // Every delivery ends done: both durable consumers drained (the dead receiver's unacknowledged
  // deliveries come back after AckWait and run on the survivor), no dead letters.
  const auto drained_deadline = Clock::now() + 120s;
  bool drained = false;
  while (!drained && Clock::now() < drained_deadline) {
    drained = true;
    for (const char* durable : {"fbr-files", "fbr-runs"}) {
      auto state = retrying([&] { return probe.consumer(kStream, durable); });
      if (!state || state->num_pending != 0 || state->num_ack_pending != 0) drained = false;
    }
    if (!drained) std::this_thread::sleep_for(200ms);
  }
  CHECK_MESSAGE(drained, a.log_tail());
  for (const char* handler : {"files", "runs"}) {
    const std::string dead = std::string(kSubject) + ".dead." + handler;
    CHECK_MESSAGE(retrying([&] { return probe.messages(kStream, dead); }).empty(), dead);
  }

  // The exec handler ran each event at least once (at-least-once: a delivery the killed
  // receiver had started may have run twice).
  std::map<std::string, int> runs;
  {
    std::ifstream in(out.path() / "runs.txt");
    for (std::string line; std::getline(in, line);)
      ++runs[line];
  }
  int not_run = 0;
  for (const auto& id : expected)
    not_run += runs.count(id) == 0 ? 1 : 0;
  CHECK(not_run == 0);
  // The file handler's output: one file per event, each the event exactly as sent.
  std::set<std::string> files;
  for (const auto& entry : fs::directory_iterator(out.path() / "files")) {
    if (entry.path().extension() == ".json") files.insert(entry.path().stem().string());
  }
  CHECK(files == expected);
  const std::string sample = *expected.begin();
  CHECK(read_file(out.path() / "files" / (sample + ".json")) == event_with_log_id(sample));
}

}  // namespace fbr::itest
