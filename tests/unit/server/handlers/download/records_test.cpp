// Where the download handler puts files (plan), what it writes about them (manifest.json,
// log.ndjson in bulk-data-client's format, .verified.ndjson) and how a retry reads them back.
#include "server/handlers/download/records.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "core/event.hpp"
#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/transfer.hpp"
#include "tests/unit/server/handlers/download/support.hpp"

namespace fbr::server::download {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

core::Event event_from(const std::string& body) {
  const core::ParseResult r = core::parse_event(body);
  REQUIRE(r.ok());
  return *r.event;
}

const std::string kEvent = R"({
  "Meta": {"DataModel": "FHIR Bulk Data Access", "EventType": "status-check-response",
           "Logs": [{"ID": "11111111-2222-4333-8444-555555555555"}]},
  "status": 200, "transactionTime": "2024-02-20T10:00:00Z", "request": "/fhir/$export",
  "requiresAccessToken": false,
  "output": [
    {"type": "Patient", "url": "http://x/p1.ndjson", "count": 25},
    {"type": "Observation", "url": "http://x/o1.ndjson"},
    {"type": "Patient", "url": "http://x/p2.ndjson"},
    {"type": "../etc/Pass wd", "url": "http://x/weird.ndjson"}
  ],
  "error": [{"type": "OperationOutcome", "url": "http://x/err.ndjson"}],
  "deleted": [{"type": "Bundle", "url": "http://x/del.ndjson"}]
})";

FileRecord record(const FileTask& t, std::uint64_t n) {
  return FileRecord{t.list,
                    t.index,
                    t.type,
                    t.url,
                    t.file,
                    n * 10,
                    n * 20,
                    n,
                    "ab" + std::to_string(n),
                    static_cast<std::int64_t>(n)};
}

TEST_CASE("download: plan names files by type and number per list") {
  const auto tasks = plan_files(event_from(kEvent), false);
  REQUIRE(tasks.size() == 6);
  CHECK(tasks[0].file == "Patient.1.ndjson");
  CHECK(tasks[0].count == 25);
  CHECK(tasks[0].expected_type == "Patient");
  CHECK(tasks[1].file == "Observation.1.ndjson");
  CHECK(tasks[2].file == "Patient.2.ndjson");
  CHECK(tasks[2].index == 2);
  CHECK(tasks[3].file == "___etc_Pass_wd.1.ndjson");  // never a path
  CHECK(tasks[4].list == "error");
  CHECK(tasks[4].file == "error/OperationOutcome.1.ndjson");
  CHECK(tasks[4].expected_type == "OperationOutcome");
  CHECK(tasks[5].list == "deleted");
  CHECK(tasks[5].file == "deleted/Bundle.1.ndjson");
  CHECK(tasks[5].expected_type == "Bundle");
  CHECK(plan_files(event_from(kEvent), true)[2].file == "Patient.2.ndjson.gz");

  CHECK(safe_type_name("") == "unknown");
  CHECK(safe_type_name("..") == "__");
  CHECK(safe_type_name(std::string(100, 'A')) == std::string(64, 'A'));
  CHECK(part_path("/d/e/Patient.1.ndjson") == fs::path("/d/e/.Patient.1.ndjson.part"));
  CHECK(part_info_path("/d/e/Patient.1.ndjson") == fs::path("/d/e/.Patient.1.ndjson.part.json"));
}

TEST_CASE("download: error answers map to retry restart renew or fail") {
  CHECK(verdict_of(200) == Verdict::kBody);
  CHECK(verdict_of(206) == Verdict::kBody);
  CHECK(verdict_of(401) == Verdict::kRenewToken);
  CHECK(verdict_of(416) == Verdict::kRestart);
  for (const long s : {408L, 429L, 500L, 502L, 503L, 504L})
    CHECK(verdict_of(s) == Verdict::kRetry);
  for (const long s : {204L, 302L, 400L, 403L, 404L, 410L})
    CHECK(verdict_of(s) == Verdict::kFail);

  using std::chrono::milliseconds;
  CHECK(backoff(1, milliseconds(500), milliseconds(30000), 0.0) == milliseconds(250));
  CHECK(backoff(1, milliseconds(500), milliseconds(30000), 1.0) == milliseconds(500));
  CHECK(backoff(3, milliseconds(500), milliseconds(30000), 1.0) == milliseconds(2000));
  CHECK(backoff(20, milliseconds(500), milliseconds(30000), 1.0) == milliseconds(30000));
  CHECK(backoff(2, milliseconds(500), milliseconds(0), 1.0) == milliseconds(0));
}

TEST_CASE("download: manifest.json lists every file with the event's transactionTime") {
  const core::Event event = event_from(kEvent);
  const auto tasks = plan_files(event, false);
  std::vector<FileRecord> records;
  for (std::size_t i = tasks.size(); i-- > 0;)
    records.push_back(record(tasks[i], i + 1));  // any order in, manifest order out
  const std::string json = manifest_json(event, "key-1", records);
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(std::string(doc["transactionTime"].GetString()) == "2024-02-20T10:00:00Z");
  CHECK(std::string(doc["request"].GetString()) == "/fhir/$export");
  CHECK(doc["requiresAccessToken"].GetBool() == false);
  CHECK(std::string(doc["logId"].GetString()) == "11111111-2222-4333-8444-555555555555");
  CHECK(std::string(doc["eventKey"].GetString()) == "key-1");
  REQUIRE(doc["output"].Size() == 4);
  const auto& second = doc["output"][1];
  CHECK(std::string(second["type"].GetString()) == "Observation");
  CHECK(std::string(second["url"].GetString()) == "http://x/o1.ndjson");
  CHECK(std::string(second["file"].GetString()) == "Observation.1.ndjson");
  CHECK(second["bytes"].GetUint64() == 20);
  CHECK(second["ndjsonBytes"].GetUint64() == 40);
  CHECK(second["lines"].GetUint64() == 2);
  CHECK(std::string(second["sha256"].GetString()) == "ab2");
  CHECK(second["durationMs"].GetInt64() == 2);
  REQUIRE(doc["error"].Size() == 1);
  CHECK(std::string(doc["error"][0]["file"].GetString()) == "error/OperationOutcome.1.ndjson");
  REQUIRE(doc["deleted"].Size() == 1);
}

TEST_CASE("download: verified records come back from the manifest and the verified list") {
  TempDir tmp;
  const core::Event event = event_from(kEvent);
  const auto tasks = plan_files(event, false);
  CHECK(read_verified(tmp.path).empty());

  append_verified(tmp.path, record(tasks[0], 1));
  append_verified(tmp.path, record(tasks[4], 5));
  {
    // A line torn by a crash is ignored; so is one that is not a record.
    std::ofstream out(tmp.path / kVerifiedFile, std::ios::app);
    out << "{\"list\":\"output\"}\n{\"list\":\"output\",\"index\":1,\"ty";
  }
  struct stat st {};
  REQUIRE(::stat((tmp.path / kVerifiedFile).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto found = read_verified(tmp.path);
  REQUIRE(found.size() == 2);
  CHECK(found[0].is_of(tasks[0]));
  CHECK(found[0].sha256 == "ab1");
  CHECK(found[1].is_of(tasks[4]));
  CHECK_FALSE(found[1].is_of(tasks[0]));

  fs::remove(tmp.path / kVerifiedFile);
  std::vector<FileRecord> all;
  for (std::size_t i = 0; i < tasks.size(); ++i)
    all.push_back(record(tasks[i], i + 1));
  posix::write_file_atomically(tmp.path, kManifestFile, manifest_json(event, "k", all));
  REQUIRE(::stat((tmp.path / kManifestFile).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  found = read_verified(tmp.path);
  REQUIRE(found.size() == tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    CAPTURE(i);
    CHECK(found[i].is_of(tasks[i]));
    CHECK(found[i].sha256 == all[i].sha256);
    CHECK(found[i].lines == all[i].lines);
  }
  // Another URL for the same entry is another file.
  FileTask moved = tasks[0];
  moved.url = "http://x/elsewhere.ndjson";
  CHECK_FALSE(found[0].is_of(moved));
}

TEST_CASE("download: log.ndjson lines have bulk-data-client's fields") {
  const auto when = std::chrono::system_clock::time_point(std::chrono::seconds(1708423200));
  CHECK(iso_date_time(when) == "2024-02-20T10:00:00+00:00");
  const auto tasks = plan_files(event_from(kEvent), false);

  rapidjson::Document line;
  line.Parse(
      log_line("exp-1", "2024-02-20T10:00:00+00:00", "download_request", request_detail(tasks[4]))
          .c_str());
  REQUIRE_FALSE(line.HasParseError());
  CHECK(std::string(line["exportId"].GetString()) == "exp-1");
  CHECK(std::string(line["timestamp"].GetString()) == "2024-02-20T10:00:00+00:00");
  CHECK(std::string(line["eventId"].GetString()) == "download_request");
  CHECK(std::string(line["eventDetail"]["fileUrl"].GetString()) == "http://x/err.ndjson");
  CHECK(std::string(line["eventDetail"]["itemType"].GetString()) == "error");
  CHECK(std::string(line["eventDetail"]["resourceType"].GetString()) == "OperationOutcome");

  rapidjson::Document complete;
  complete.Parse(complete_detail(record(tasks[0], 3)).c_str());
  CHECK(std::string(complete["fileUrl"].GetString()) == "http://x/p1.ndjson");
  CHECK(complete["fileSize"].GetUint64() == 60);  // NDJSON bytes
  CHECK(complete["resourceCount"].GetUint64() == 3);

  rapidjson::Document error;
  error.Parse(error_detail(tasks[1], 503, "Observation.1.ndjson: HTTP 503", "busy", "7").c_str());
  CHECK(std::string(error["body"].GetString()) == "busy");
  CHECK(error["code"].GetInt64() == 503);
  CHECK(std::string(error["fileUrl"].GetString()) == "http://x/o1.ndjson");
  CHECK(std::string(error["message"].GetString()) == "Observation.1.ndjson: HTTP 503");
  CHECK(std::string(error["responseHeaders"]["retry-after"].GetString()) == "7");
  error.Parse(error_detail(tasks[1], std::nullopt, "cut", "", "").c_str());
  CHECK(error["body"].IsNull());
  CHECK(error["code"].IsNull());
  CHECK(error["responseHeaders"].ObjectEmpty());

  rapidjson::Document done;
  done.Parse(export_complete_detail({record(tasks[0], 1), record(tasks[1], 2)}, 1234).c_str());
  CHECK(done["files"].GetUint64() == 2);
  CHECK(done["resources"].GetUint64() == 3);
  CHECK(done["bytes"].GetUint64() == 60);
  CHECK(done["attachments"].GetUint64() == 0);
  CHECK(done["duration"].GetInt64() == 1234);
}

TEST_CASE("download: ExportLog appends one line per event with an ISO timestamp") {
  TempDir tmp;
  const auto tasks = plan_files(event_from(kEvent), false);
  {
    ExportLog log(tmp.path / kLogFile, "exp-2");
    log.write("download_request", request_detail(tasks[0]));
    log.write("download_complete", complete_detail(record(tasks[0], 1)));
    log.sync();
  }
  ExportLog again(tmp.path / kLogFile, "exp-2");  // a retry appends
  again.write("export_complete", export_complete_detail({}, 5));
  std::istringstream lines(slurp(tmp.path / kLogFile));
  std::vector<std::string> ids;
  std::string text;
  const std::regex iso(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00)");
  while (std::getline(lines, text)) {
    rapidjson::Document d;
    d.Parse(text.c_str());
    REQUIRE_FALSE(d.HasParseError());
    CHECK(std::regex_match(std::string(d["timestamp"].GetString()), iso));
    CHECK(std::string(d["exportId"].GetString()) == "exp-2");
    ids.emplace_back(d["eventId"].GetString());
  }
  CHECK(ids ==
        std::vector<std::string>{"download_request", "download_complete", "export_complete"});
}

}  // namespace
}  // namespace fbr::server::download
