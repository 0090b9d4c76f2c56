// Fair workers (issue 12): a handler runs at most its `concurrency` deliveries at once, so
// downloads that hang cannot take every dispatcher worker; a transfer below
// min_speed_bytes_per_s over min_speed_window_s (or silent for idle_timeout_ms) is cut and
// retried; an event listing more than max_files files is dead. The real binary on loopback,
// downloads from download_support's FileServer (bodies dribbled a few bytes at a time).
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/nats_support.hpp"

using namespace fbr::itest;
using namespace fbr::itest::download;
using dispatch::describe_deliveries;
using dispatch::json_string;
using dispatch::poll_until;
using dispatch::wait_for_state;
namespace fs = std::filesystem;

namespace {

constexpr int kDownloads = 8;

/// About 64 KiB of Patient lines: dribbled at 32 B/s, a download that lasts half an hour.
Resource slow_patients(std::size_t bytes = 8, std::chrono::milliseconds every = 250ms) {
  return Resource(generated_ndjson("Patient", 1000, 64)).dribbled(bytes, every);
}

/// The server's config: dispatch.concurrency 8, a download handler for Patient events with
/// `download_more` members, a file handler for Observation events, `journal` (may be empty).
ServerConfig fair_config(const fs::path& downloads, const fs::path& files,
                         const std::string& download_more, const std::string& journal = {}) {
  ServerConfig config = download_config(
      {download_handler("dl", downloads,
                        R"("when": {"resource_types": ["Patient"]}, "parallel": 1, )"
                        R"("transfer_attempts": 1, )" +
                            download_more),
       R"({"name": "files", "type": "file", "dir": )" + json_string(files.string()) +
           R"(, "when": {"resource_types": ["Observation"]}})"});
  config.extra_members += R"(, "dispatch": {"concurrency": 8})";
  if (!journal.empty()) config.extra_members += ", " + journal;
  return config;
}

/// An event for the file handler only (its URL is never fetched).
std::string file_event(const std::string& log_id) {
  return export_event(log_id, {EventFile("Observation", "http://127.0.0.1:9/never.ndjson")}, false);
}

std::string nats_journal(const NatsCluster& cluster) {
  return R"("journal": {"backend": "nats", "nats": {"servers": )" + cluster.servers_json() +
         R"(, "stream": "FBR_FAIR", "subject": "fbr.fair"}})";
}

/// Eight dribbling downloads (download handler keys `download_more`), then three events for the
/// file handler: they must land while the downloads still hang, and no more than `cap`
/// downloads may have started. `nats`: with that journal instead of SQLite.
void check_file_handler_keeps_running(const std::string& download_more, int cap,
                                      const NatsCluster* nats = nullptr) {
  TempDir dir;
  const fs::path files = dir.path() / "files";
  Server server(dir, fair_config(dir.path() / "downloads", files, download_more,
                                 nats != nullptr ? nats_journal(*nats) : std::string()));
  for (const char* consumer : {"fbr-dl", "fbr-files"}) {
    if (nats == nullptr) break;  // SQLite: nothing to wait for
    REQUIRE_MESSAGE(
        server.wait_for_line(
            {"dispatcher_consumer_ready", "consumer=" + std::string(consumer) + " "}, 20s),
        consumer, " never ready:\n", server.log_tail());
  }
  FileServer slow;  // destroyed first: its downloads end before the server stops
  for (int i = 0; i < kDownloads; ++i) {
    const std::string path = "/p" + std::to_string(i);
    slow.put(path, slow_patients());
    post_ok(server, export_event(new_log_id(), {EventFile("Patient", slow.url(path))}, false));
  }
  // The downloads have taken every worker they may.
  REQUIRE_MESSAGE(poll_until([&] { return slow.dribbling() >= cap; }, 20s), "only ",
                  slow.dribbling(), " downloads started\n", server.log_tail());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(new_log_id());
    post_ok(server, file_event(ids.back()));
  }
  const bool landed = poll_until(
      [&] {
        for (const auto& id : ids) {
          if (!fs::exists(files / (id + ".json"))) return false;
        }
        return true;
      },
      3s);
  INFO(server.log_tail());
  CHECK_MESSAGE(landed, "the file handler's events did not land while ", slow.dribbling(),
                " downloads hang");
  // Still hanging (above the speed rule: not cut), and never more than the cap at once.
  CHECK(slow.dribbling() == cap);
  CHECK(slow.count() == static_cast<std::size_t>(cap));
}

// 32 B/s, above the 8 B/s over 2 s asked for: the speed rule must not cut them.
const char* const kCapSix =
    R"("concurrency": 6, "min_speed_bytes_per_s": 8, "min_speed_window_s": 2)";

}  // namespace

TEST_CASE(
    "fair workers: eight dribbling downloads at concurrency 6 leave the file handler "
    "running (sqlite)") {
  check_file_handler_keeps_running(kCapSix, 6);
}

TEST_CASE(
    "fair workers: by default a download handler beside another handler takes at most "
    "dispatch.concurrency - 1 workers (sqlite)") {
  check_file_handler_keeps_running(R"("min_speed_bytes_per_s": 1)", 7);
}

TEST_CASE(
    "fair workers: eight dribbling downloads at concurrency 6 leave the file handler "
    "running (nats)") {
  if (auto why = NatsCluster::unavailable()) {
    FAIL("nats-server is needed: ", *why);
    return;
  }
  const NatsCluster cluster(1);
  check_file_handler_keeps_running(kCapSix, 6, &cluster);
}

TEST_CASE("fair workers: a dribbling transfer is cut by the speed rule and the delivery retried") {
  TempDir dir;
  Server server(
      dir,
      download_config({download_handler("dl", dir.path() / "downloads",
                                        R"("transfer_attempts": 1, "min_speed_bytes_per_s": 1024, )"
                                        R"("min_speed_window_s": 2, "retry": {"max_attempts": 2, )"
                                        R"("initial_backoff_ms": 50, "max_backoff_ms": 100})")}));
  FileServer slow;
  slow.put("/slow.ndjson", slow_patients());  // 32 B/s
  const std::string id = new_log_id();
  const auto started = std::chrono::steady_clock::now();
  post_ok(server, export_event(id, {EventFile("Patient", slow.url("/slow.ndjson"))}, false));
  std::optional<dispatch::DeliveryInfo> last;
  const bool dead = wait_for_state(server, id, "dl", "dead", 20s, &last);
  const auto took = std::chrono::steady_clock::now() - started;
  INFO(describe_deliveries(server));
  INFO(server.log_tail(20));
  REQUIRE(dead);
  // Two attempts, each cut after the 2 s window (not at once, not never).
  CHECK(last->attempts == 2);
  CHECK(last->last_error.find("gave up after 2 attempts") != std::string::npos);
  CHECK(last->last_error.find("transfer slower than 1024 B/s for 2 s "
                              "(min_speed_bytes_per_s, min_speed_window_s)") != std::string::npos);
  CHECK(slow.count() == 2);
  CHECK(took >= 4s);
  CHECK(took < 15s);
  CHECK(!dispatch::log_lines_with(server, {"delivery_retry_scheduled", "handler=dl"}, 1).empty());
}

TEST_CASE("fair workers: a transfer that receives nothing for idle_timeout_ms is cut naming it") {
  TempDir dir;
  Server server(dir, download_config({download_handler(
                         "dl", dir.path() / "downloads",
                         R"("transfer_attempts": 1, "idle_timeout_ms": 1500, )"
                         R"("min_speed_bytes_per_s": 1, "min_speed_window_s": 600)")}));
  FileServer slow;
  slow.put("/silent.ndjson", slow_patients(8, 3600s));  // one chunk, then silence
  const std::string id = new_log_id();
  post_ok(server, export_event(id, {EventFile("Patient", slow.url("/silent.ndjson"))}, false));
  std::optional<dispatch::DeliveryInfo> last;
  const bool failed = poll_until(
      [&] {
        last = dispatch::delivery_of(server, id, "dl");
        return last && !last->last_error.empty();
      },
      15s);
  INFO(describe_deliveries(server));
  INFO(server.log_tail(20));
  REQUIRE(failed);
  CHECK(last->last_error.find("received nothing for 1500 ms (idle_timeout_ms)") !=
        std::string::npos);
}

TEST_CASE("fair workers: an event with more files than max_files is dead without a request") {
  TempDir dir;
  FileServer files;
  std::vector<EventFile> three;
  for (int i = 0; i < 3; ++i) {
    const std::string path = "/f" + std::to_string(i) + ".ndjson";
    files.put(path, Resource(R"({"resourceType":"Patient","id":"p"})"
                             "\n"));
    three.emplace_back("Patient", files.url(path));
  }
  Server server(dir, download_config(
                         {download_handler("dl", dir.path() / "downloads", R"("max_files": 3)")}));
  // At the limit: fetched and done.
  const std::string at_limit = new_log_id();
  post_ok(server, export_event(at_limit, three, false));
  std::optional<dispatch::DeliveryInfo> last;
  REQUIRE_MESSAGE(wait_for_state(server, at_limit, "dl", "done", 20s, &last),
                  describe_deliveries(server), server.log_tail());
  CHECK(files.count() == 3);

  // One more (an error[] file counts too): dead at once, naming the count and the setting;
  // nothing fetched.
  const std::string over = new_log_id();
  post_ok(server, export_event(over, three, false,
                               {EventFile("OperationOutcome", files.url("/f0.ndjson"))}));
  REQUIRE_MESSAGE(wait_for_state(server, over, "dl", "dead", 20s, &last),
                  describe_deliveries(server));
  CHECK(last->attempts == 1);
  CHECK(last->last_error ==
        "the event lists 4 files (output, error and deleted together), more than handler dl's "
        "max_files (3)");
  CHECK(files.count() == 3);
  CHECK(!fs::exists(dir.path() / "downloads" / over));
}
