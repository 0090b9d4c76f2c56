// The download handler's progress (download/progress.hpp) as the console reads it back from the
// process's Activity hub: a delivery driven in-process against a scripted server on loopback.
#include "server/handlers/download/progress.hpp"

#include <doctest/doctest.h>
#include <spdlog/sinks/null_sink.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/event.hpp"
#include "core/text.hpp"
#include "server/handlers/handler.hpp"
#include "server/support/activity.hpp"
#include "tests/unit/server/handlers/download/support.hpp"
#include "tests/unit/server/handlers/test_server.hpp"

namespace fbr::server::download {
namespace {

using server::test::Reply;
using server::test::TestServer;

std::string ndjson(const std::string& type, int lines) {
  std::string out;
  for (int i = 0; i < lines; ++i)
    out += R"({"resourceType":")" + type + R"(","id":")" + std::to_string(i) + "\"}\n";
  return out;
}

/// A complete export event whose output[] is these (type, url) pairs.
std::string export_event(const std::string& log_id,
                         const std::vector<std::pair<std::string, std::string>>& files) {
  std::string output;
  for (const auto& [type, url] : files) {
    if (!output.empty()) output += ",";
    output += R"({"type":")" + type + R"(","url":")" + url + "\"}";
  }
  return R"({"Meta":{"DataModel":"FHIR Bulk Data Access","EventType":"status-check-response",)"
         R"("Logs":[{"ID":")" +
         log_id +
         R"(","AttemptID":"a-1"}]},"status":200,)"
         R"("transactionTime":"2026-01-01T00:00:00Z","request":"https://x.test/$export",)"
         R"("requiresAccessToken":false,"output":[)" +
         output + "]}";
}

/// One download handler on `dir`, one file at a time (the scripted server answers connections
/// in order), one try per file (a failure is not waited out).
struct Download {
  Logger log{config::Log{"warn", config::LogFormat::kText},
             std::make_shared<spdlog::sinks::null_sink_mt>()};
  std::unique_ptr<Handler> handler;

  Download(const std::string& name, const std::filesystem::path& dir) {
    config::Handler h;
    h.name = name;
    h.type = "download";
    config::DownloadHandler settings;
    settings.dir = dir.string();
    settings.parallel = 1;
    settings.transfer_attempts = 1;
    settings.egress.allowed_hosts = {"127.0.0.1"};
    h.settings = settings;
    handler = make_handler(h, dir, log);
  }

  Outcome run(const std::string& log_id, const std::string& body) {
    const core::ParseResult parsed = core::parse_event(body);
    REQUIRE(parsed.ok());
    Delivery d;
    d.event_key = log_id;
    d.log_id = log_id;
    d.attempt_id = "a-1";
    d.status = 200;
    d.body = body;
    d.parsed = &parsed;
    return handler->deliver(d);
  }
};

}  // namespace

TEST_CASE("download progress: every file of a delivery ends verified at 100 percent") {
  test::TempDir tmp;
  const std::string patients = ndjson("Patient", 3);
  const std::string observations = ndjson("Observation", 5);
  TestServer server({{200, "", patients}, {200, "", observations}});
  // The signature in the query is a credential: the console shows the URL without it.
  const std::string body =
      export_event("progress-ok", {{"Patient", server.url("/Patient.ndjson?sig=s3cr3t")},
                                   {"Observation", server.url("/Observation.ndjson")}});
  Download download("fetch", tmp.path);
  REQUIRE(download.run("progress-ok", body).kind == Outcome::Kind::kDone);

  const auto files = activity().progress_of("progress-ok");
  REQUIRE(files.size() == 2);
  CHECK(files[0].handler == "fetch");
  CHECK(files[0].url == server.url("/Patient.ndjson"));
  CHECK(files[0].file == "Patient.1.ndjson");
  CHECK(files[0].resources == 3);
  CHECK(files[0].sha256 == core::sha256_hex(patients));
  CHECK(files[1].file == "Observation.1.ndjson");
  CHECK(files[1].resources == 5);
  CHECK(files[1].sha256 == core::sha256_hex(observations));
  for (const auto& f : files) {
    CHECK(f.verified);
    CHECK(f.error.empty());
    CHECK(f.expected == std::optional<std::uint64_t>(f.bytes));
    CHECK(f.url.find("s3cr3t") == std::string::npos);
  }
  CHECK(files[0].bytes == patients.size());
  CHECK(files[1].bytes == observations.size());
}

TEST_CASE("download progress: a file that fails shows its error and is not verified") {
  test::TempDir tmp;
  // The first file's lines are of the wrong type (permanent); the second server is busy.
  TestServer server({{200, "", ndjson("Observation", 2)}, {503, "", "busy"}});
  const std::string body = export_event(
      "progress-bad",
      {{"Patient", server.url("/Patient.ndjson")}, {"Condition", server.url("/Condition.ndjson")}});
  Download download("fetch", tmp.path);
  CHECK(download.run("progress-bad", body).kind != Outcome::Kind::kDone);

  const auto files = activity().progress_of("progress-bad");
  REQUIRE(files.size() == 2);
  for (const auto& f : files) {
    CHECK_FALSE(f.verified);
    CHECK(f.sha256.empty());
  }
  CHECK(files[0].error.find("resourceType is \"Observation\"") != std::string::npos);
  CHECK(files[1].error.find("HTTP 503") != std::string::npos);
  CHECK(files[1].bytes == 0);
}

TEST_CASE("download progress: a file verified by an earlier delivery is shown verified") {
  test::TempDir tmp;
  const std::string patients = ndjson("Patient", 4);
  TestServer server({{200, "", patients}});
  const std::string body =
      export_event("progress-kept", {{"Patient", server.url("/Patient.ndjson")}});
  REQUIRE(Download("first", tmp.path).run("progress-kept", body).kind == Outcome::Kind::kDone);
  // Another handler on the same folder (or this one after a restart) fetches nothing again but
  // still reports the file, from its record.
  REQUIRE(Download("second", tmp.path).run("progress-kept", body).kind == Outcome::Kind::kDone);
  CHECK(server.requests().size() == 1);

  std::vector<Activity::FileProgress> second;
  for (const auto& f : activity().progress_of("progress-kept")) {
    if (f.handler == "second") second.push_back(f);
  }
  REQUIRE(second.size() == 1);
  CHECK(second[0].verified);
  CHECK(second[0].file == "Patient.1.ndjson");
  CHECK(second[0].bytes == patients.size());
  CHECK(second[0].expected == std::optional<std::uint64_t>(patients.size()));
  CHECK(second[0].resources == 4);
  CHECK(second[0].sha256 == core::sha256_hex(patients));
}

}  // namespace fbr::server::download

namespace fbr::server::download {

TEST_CASE("download progress: bytes are recorded every MiB, a start and a failure at once") {
  const ProgressTarget target{"progress-rate", "fetch"};
  FileTask task{"output",     0,         "Patient",         "https://x.test/P.ndjson?sig=q",
                std::nullopt, "Patient", "Patient.1.ndjson"};
  FileReport report(&target, task);
  const auto recorded = [] {
    const auto files = activity().progress_of("progress-rate");
    REQUIRE(files.size() == 1);
    return files.front();
  };
  const auto started = std::chrono::steady_clock::now();
  report.start(0, 0, 3 << 20);
  CHECK(recorded().expected == std::optional<std::uint64_t>(3 << 20));
  CHECK(recorded().url == "https://x.test/P.ndjson");
  report.received(512 << 10, 10);
  // Within the quarter second (unless this thread was held up that long): not yet recorded.
  if (std::chrono::steady_clock::now() - started < std::chrono::milliseconds(200)) {
    CHECK(recorded().bytes == 0);
  }
  report.received((3 << 19), 30);  // 1.5 MiB: a MiB since the last record
  CHECK(recorded().bytes == (3 << 19));
  CHECK(recorded().resources == 30);
  report.failed("HTTP 503");
  CHECK(recorded().error == "HTTP 503");
  CHECK_FALSE(recorded().verified);
}

TEST_CASE("download progress: a failure after verified takes the verified mark back") {
  const ProgressTarget target{"progress-unverified", "fetch"};
  FileTask task{"output",     0,         "Patient",         "https://x.test/P.ndjson",
                std::nullopt, "Patient", "Patient.1.ndjson"};
  FileReport report(&target, task);
  FileRecord record;
  record.url = task.shown_url();
  record.file = task.file;
  record.bytes = 10;
  record.sha256 = "ab";
  report.verified(record);
  REQUIRE(activity().progress_of("progress-unverified").front().verified);
  // e.g. .verified.ndjson could not be written: the file is fetched again.
  report.failed("write .verified.ndjson: No space left on device");
  const auto f = activity().progress_of("progress-unverified").front();
  CHECK_FALSE(f.verified);
  CHECK(f.sha256.empty());
  CHECK_FALSE(f.error.empty());
}

TEST_CASE("download progress: a report without a target records nothing") {
  FileReport report;
  report.start(0, 0, 10);
  report.received(5, 1);
  report.failed("x");
  CHECK(activity().progress_of("").empty());
}

}  // namespace fbr::server::download
