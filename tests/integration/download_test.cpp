// The download handler (issue 4), end to end: the real binary on loopback receives a complete
// status-check-response, and its download handler fetches the export's NDJSON files from nginx
// (Debian's package, serving tests/fixtures/synthea-r4: 17 files, 8,248 resources) or from
// FileServer (download_support) where a fault must be injected. Each test checks what lands on
// disk against the source bytes. Waiting is always a poll with a deadline.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/text.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using namespace fbr::itest::download;
using dispatch::DeliveryInfo;
using dispatch::describe_deliveries;
using dispatch::log_lines_with;
using dispatch::poll_until;
using dispatch::wait_for_state;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kDeadline = std::chrono::seconds(30);

#define SKIP_WITHOUT_NGINX() \
  if (const auto why = Nginx::unavailable()) return skip_test(*why)

/// Files whose names say they are not finished (temp, part, sidecar).
std::vector<std::string> unfinished_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& f : files_under(dir)) {
    const std::string name = fs::path(f).filename().string();
    if (name.ends_with(".part") || name.ends_with(".part.json") || name.ends_with(".tmp")) {
      out.push_back(f);
    }
  }
  return out;
}

std::string synthea_text(const std::string& type) {
  for (const auto& f : synthea()) {
    if (f.type == type) return f.ndjson;
  }
  FAIL("no synthea file for ", type);
  return {};
}

std::string in_progress_event(const std::string& log_id) {
  static constexpr std::string_view kFixtureId = "0b6c1d52-3f2a-4f57-9a43-5d0f1c6a9e11";
  std::string body = fixture("in-progress.json");
  const auto at = body.find(kFixtureId);
  REQUIRE(at != std::string::npos);
  body.replace(at, kFixtureId.size(), log_id);
  return body;
}

}  // namespace

TEST_CASE("download: nginx serves the synthea export and every file is fetched verified stored") {
  SKIP_WITHOUT_NGINX();
  TempDir tmp;
  const fs::path www = tmp.path() / "www";
  fs::create_directories(www / "plain");
  std::vector<EventFile> output;
  std::size_t total_bytes = 0;
  std::size_t total_lines = 0;
  for (const auto& f : synthea()) {
    write_file(www / "plain" / (f.type + ".ndjson"), f.ndjson);
    total_bytes += f.ndjson.size();
    total_lines += f.lines;
  }
  REQUIRE(synthea().size() == 17);
  CHECK(total_lines == 8248);
  Nginx nginx(tmp.path() / "nginx", www);
  for (const auto& f : synthea()) {
    output.push_back(
        {f.type, nginx.url("/plain/" + f.type + ".ndjson"), static_cast<std::int64_t>(f.lines)});
  }
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));

  const std::string log_id = new_log_id();
  const auto started = Clock::now();
  post_ok(server, export_event(log_id, output, false));
  const DeliveryInfo done = wait_state(server, log_id, "fetch", "done");
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  MESSAGE("synthea export (17 files, " << total_bytes << " bytes, " << total_lines
                                       << " resources) fetched and verified in " << seconds
                                       << " s: " << static_cast<double>(total_bytes) / seconds / 1e6
                                       << " MB/s (debug build, parallel 4)");
  CHECK(done.attempts == 1);

  const fs::path event_dir = downloads / log_id;
  CHECK(mode_of(downloads) == 0700);
  CHECK(mode_of(event_dir) == 0700);
  std::set<std::string> expected = {".lock", "log.ndjson", "manifest.json"};
  for (const auto& f : synthea()) {
    const fs::path stored = event_dir / (f.type + ".1.ndjson");
    CAPTURE(stored);
    expected.insert(f.type + ".1.ndjson");
    CHECK(read_file(stored) == f.ndjson);  // byte-identical
    CHECK(mode_of(stored) == 0600);
  }
  const auto on_disk = files_under(event_dir);
  CHECK(std::set<std::string>(on_disk.begin(), on_disk.end()) == expected);
  CHECK(mode_of(event_dir / "manifest.json") == 0600);
  CHECK(mode_of(event_dir / "log.ndjson") == 0600);

  const auto manifest = parse_json(read_file(event_dir / "manifest.json"));
  REQUIRE_FALSE(manifest.HasParseError());
  CHECK(json_str(manifest, "/transactionTime") == "2024-02-20T10:00:00Z");
  CHECK(json_str(manifest, "/request") == "https://ehr.example.org/fhir/$export?_type=Patient");
  CHECK(json_str(manifest, "/logId") == log_id);
  REQUIRE(manifest["output"].Size() == 17);
  for (rapidjson::SizeType i = 0; i < 17; ++i) {
    const auto& f = synthea()[i];
    const auto& entry = manifest["output"][i];
    CAPTURE(f.type);
    CHECK(std::string(entry["type"].GetString()) == f.type);
    CHECK(std::string(entry["url"].GetString()) == output[i].url);
    CHECK(std::string(entry["file"].GetString()) == f.type + ".1.ndjson");
    CHECK(entry["lines"].GetUint64() == f.lines);
    CHECK(entry["bytes"].GetUint64() == f.ndjson.size());
    CHECK(std::string(entry["sha256"].GetString()) == fbr::core::sha256_hex(f.ndjson));
    CHECK(entry["durationMs"].IsInt64());
  }

  // log.ndjson: bulk-data-client's events, one request and one completion per file.
  const auto events = export_log(event_dir / "log.ndjson");
  std::map<std::string, int> counts;
  for (const auto& [id, detail] : events)
    ++counts[id];
  CHECK(counts == std::map<std::string, int>{
                      {"download_request", 17}, {"download_complete", 17}, {"export_complete", 1}});
  REQUIRE_FALSE(events.empty());
  CHECK(events.back().first == "export_complete");
  const auto last = parse_json(events.back().second);
  CHECK(json_raw(last, "/files") == "17");
  CHECK(json_raw(last, "/resources") == "8248");
  CHECK(json_raw(last, "/bytes") == std::to_string(total_bytes));
  const auto first_line = parse_json(dispatch::file_lines(event_dir / "log.ndjson").front());
  CHECK(json_str(first_line, "/exportId") == log_id);
  CHECK(json_str(first_line, "/eventId") == "download_request");
  CHECK(json_str(first_line, "/eventDetail/itemType") == "output");
  CHECK(nginx.access_log().size() == 17);
}

TEST_CASE("download: gzip is decoded when served with Content-Encoding and as a .gz file") {
  SKIP_WITHOUT_NGINX();
  TempDir tmp;
  const fs::path www = tmp.path() / "www";
  fs::create_directories(www / "encoded");
  fs::create_directories(www / "files");
  for (const auto& f : synthea()) {
    write_file(www / "encoded" / (f.type + ".ndjson.gz"), f.gz);  // gzip_static
    write_file(www / "files" / (f.type + ".ndjson.gz"), f.gz);    // as-is
  }
  Nginx nginx(tmp.path() / "nginx", www);
  // nginx really answers the first way with Content-Encoding: gzip.
  HttpRequest probe = get("/encoded/Patient.ndjson");
  probe.headers.emplace_back("Accept-Encoding", "gzip");
  const auto answer = http(nginx.port(), probe);
  REQUIRE(answer.status == 200);
  CHECK(answer.header("Content-Encoding") == "gzip");
  CHECK(gunzip_with_tool(answer.body) == synthea_text("Patient"));

  std::vector<EventFile> output;
  for (const auto& f : synthea()) {
    output.push_back({f.type, nginx.url("/encoded/" + f.type + ".ndjson"), std::nullopt});
    output.push_back(
        {f.type, nginx.url("/files/" + f.type + ".ndjson.gz"), static_cast<std::int64_t>(f.lines)});
  }
  const fs::path plain = tmp.path() / "plain";
  const fs::path packed = tmp.path() / "packed";
  Server server(tmp, download_config({download_handler("plain", plain),
                                      download_handler("packed", packed, R"("store": "gzip")")}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, output, false));
  wait_state(server, log_id, "plain", "done");
  wait_state(server, log_id, "packed", "done");

  const auto manifest = parse_json(read_file(packed / log_id / "manifest.json"));
  REQUIRE(manifest["output"].Size() == 34);
  rapidjson::SizeType i = 0;
  for (const auto& f : synthea()) {
    CAPTURE(f.type);
    // store: ndjson (the default) keeps NDJSON, whichever way it came.
    CHECK(read_file(plain / log_id / (f.type + ".1.ndjson")) == f.ndjson);
    CHECK(read_file(plain / log_id / (f.type + ".2.ndjson")) == f.ndjson);
    // store: gzip keeps gzip files that decompress to the same NDJSON.
    for (int n : {1, 2}) {
      const fs::path stored = packed / log_id / (f.type + "." + std::to_string(n) + ".ndjson.gz");
      const std::string bytes = read_file(stored);
      CHECK(bytes.substr(0, 2) == "\x1f\x8b");
      CHECK(gunzip_with_tool(bytes) == f.ndjson);
      const auto& entry = manifest["output"][i++];
      CHECK(std::string(entry["sha256"].GetString()) == fbr::core::sha256_hex(bytes));
      CHECK(entry["bytes"].GetUint64() == bytes.size());
      CHECK(entry["ndjsonBytes"].GetUint64() == f.ndjson.size());
      CHECK(entry["lines"].GetUint64() == f.lines);
    }
  }
  CHECK(unfinished_files(plain).empty());
  CHECK(unfinished_files(packed).empty());
}

TEST_CASE("download: the bearer token is sent only when requiresAccessToken is true") {
  const std::string token = "s3cr3t-access-token-4711";
  ::setenv("DL_TEST_ACCESS_TOKEN", token.c_str(), 1);
  FileServer files;
  const std::string body = synthea_text("Patient");
  files.put("/secure/a/Patient.ndjson", Resource(body).with_bearer(token));
  files.put("/secure/c/Patient.ndjson", Resource(body).with_bearer(token));
  files.put("/open/Patient.ndjson", Resource(body));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads,
                                                       R"("token_env": "DL_TEST_ACCESS_TOKEN", )"
                                                       R"("token_hosts": ["127.0.0.1"])")}));

  const std::string with_token = new_log_id();
  const std::string without_token = new_log_id();
  const std::string refused = new_log_id();
  post_ok(server,
          export_event(with_token, {{"Patient", files.url("/secure/a/Patient.ndjson")}}, true));
  post_ok(server,
          export_event(without_token, {{"Patient", files.url("/open/Patient.ndjson")}}, false));
  post_ok(server,
          export_event(refused, {{"Patient", files.url("/secure/c/Patient.ndjson")}}, false));
  wait_state(server, with_token, "fetch", "done");
  wait_state(server, without_token, "fetch", "done");
  const DeliveryInfo dead = wait_state(server, refused, "fetch", "dead");

  const auto secure = files.requests("/secure/a/Patient.ndjson");
  REQUIRE(secure.size() == 1);
  CHECK(secure[0].header("Authorization") == "Bearer " + token);
  CHECK(secure[0].header("Accept") == "application/fhir+ndjson");
  CHECK(secure[0].header("Accept-Encoding") == "gzip");
  const auto open = files.requests("/open/Patient.ndjson");
  REQUIRE(open.size() == 1);
  CHECK_FALSE(open[0].header("Authorization").has_value());
  CHECK(read_file(downloads / with_token / "Patient.1.ndjson") == body);
  CHECK(read_file(downloads / without_token / "Patient.1.ndjson") == body);

  // A 401 without a token: permanent, after one attempt, saying why.
  const auto unauthorized = files.requests("/secure/c/Patient.ndjson");
  REQUIRE(unauthorized.size() == 1);
  CHECK_FALSE(unauthorized[0].header("Authorization").has_value());
  CHECK(dead.attempts == 1);
  CHECK(dead.last_error.find("Patient.1.ndjson (" + files.url("/secure/c/Patient.ndjson") +
                             "): HTTP 401") != std::string::npos);
  CHECK(dead.last_error.find("no access token was sent") != std::string::npos);
  CHECK_FALSE(fs::exists(downloads / refused / "Patient.1.ndjson"));
  CHECK(unfinished_files(downloads / refused).empty());

  // The token is nowhere: not in the service's log, the journal, or the files written.
  CHECK(server.log().find(token) == std::string::npos);
  CHECK(describe_deliveries(server).find(token) == std::string::npos);
  for (const auto& f : files_under(downloads)) {
    if (f.ends_with(".ndjson") && !f.ends_with("log.ndjson")) continue;  // the data itself
    CAPTURE(f);
    CHECK(read_file(downloads / f).find(token) == std::string::npos);
  }
  ::unsetenv("DL_TEST_ACCESS_TOKEN");
}

TEST_CASE("download: token_command is run again once when a download gets 401") {
  TempDir tmp;
  const fs::path runs = tmp.path() / "runs";
  const fs::path script = tmp.path() / "token.sh";
  // The first run prints a stale token, later runs the one the server takes.
  dispatch::write_script(
      script, "n=$(cat '" + runs.string() +
                  "' 2>/dev/null || echo 0)\n"
                  "echo $((n+1)) > '" +
                  runs.string() +
                  "'\n"
                  "if [ \"$n\" = 0 ]; then echo stale-token-1; else echo fresh-token-2; fi\n");
  FileServer files;
  const std::vector<std::string> types = {"Patient", "Practitioner", "Organization"};
  std::vector<EventFile> output;
  for (const auto& type : types) {
    files.put("/t/" + type + ".ndjson", Resource(synthea_text(type)).with_bearer("fresh-token-2"));
    output.push_back({type, files.url("/t/" + type + ".ndjson")});
  }
  const fs::path downloads = tmp.path() / "downloads";
  Server server(
      tmp, download_config({download_handler("fetch", downloads,
                                             R"("parallel": 3, "token_hosts": ["127.0.0.1"], )"
                                             R"("token_command": ["/bin/sh", )" +
                                                 dispatch::json_string(script.string()) + "]")}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, output, true));
  const DeliveryInfo done = wait_state(server, log_id, "fetch", "done");
  CHECK(done.attempts == 1);
  CHECK(read_file(runs) == "2\n");  // once, then once more after the 401s
  int refused = 0;
  for (const auto& type : types) {
    CAPTURE(type);
    const auto requests = files.requests("/t/" + type + ".ndjson");
    REQUIRE_FALSE(requests.empty());
    CHECK(requests.back().header("Authorization") == "Bearer fresh-token-2");
    for (const auto& r : requests)
      refused += r.header("Authorization") == "Bearer stale-token-1" ? 1 : 0;
    CHECK(read_file(downloads / log_id / (type + ".1.ndjson")) == synthea_text(type));
  }
  CHECK(refused >= 1);
  CHECK(server.log().find("stale-token-1") == std::string::npos);
  CHECK(server.log().find("fresh-token-2") == std::string::npos);
}

TEST_CASE(
    "download: a line of the wrong resourceType and a truncated line fail naming file and line") {
  const std::string patients = synthea_text("Patient");
  // Line 3 is an Observation in a Patient file.
  std::string wrong_type;
  {
    std::size_t at = 0;
    for (int line = 0; line < 2; ++line)
      at = patients.find('\n', at) + 1;
    wrong_type = patients.substr(0, at) + R"({"resourceType":"Observation","id":"x"})" + "\n" +
                 patients.substr(at);
  }
  // Line 2 is cut in the middle (the file goes on after it).
  const std::string observations = generated_ndjson("Observation", 5, 120);
  const std::size_t second = observations.find('\n') + 1;
  const std::string truncated = observations.substr(0, second + 40) + "\n" +
                                observations.substr(observations.find('\n', second) + 1);

  FileServer files;
  files.put("/bad/type.ndjson", Resource(wrong_type));
  files.put("/bad/truncated.ndjson", Resource(truncated));
  files.put("/bad/good.ndjson", Resource(synthea_text("Condition")));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id,
                               {{"Patient", files.url("/bad/type.ndjson")},
                                {"Observation", files.url("/bad/truncated.ndjson")},
                                {"Condition", files.url("/bad/good.ndjson")}},
                               false));
  const DeliveryInfo dead = wait_state(server, log_id, "fetch", "dead");
  INFO(dead.last_error);
  CHECK(dead.attempts == 1);  // verification failures are not retried
  CHECK(dead.last_error.starts_with("2 of 3 files failed: "));
  CHECK(dead.last_error.find("Patient.1.ndjson (" + files.url("/bad/type.ndjson") +
                             "): line 3: resourceType is \"Observation\", expected \"Patient\"") !=
        std::string::npos);
  CHECK(dead.last_error.find("Observation.1.ndjson (" + files.url("/bad/truncated.ndjson") +
                             "): line 2: not valid JSON: ") != std::string::npos);

  const fs::path event_dir = downloads / log_id;
  // A bad file is never where a good one would be; the good one is kept, verified.
  CHECK_FALSE(fs::exists(event_dir / "Patient.1.ndjson"));
  CHECK_FALSE(fs::exists(event_dir / "Observation.1.ndjson"));
  CHECK(read_file(event_dir / "Condition.1.ndjson") == synthea_text("Condition"));
  CHECK(unfinished_files(event_dir).empty());
  CHECK_FALSE(fs::exists(event_dir / "manifest.json"));  // only for a complete export
  const auto events = export_log(event_dir / "log.ndjson");
  int errors = 0;
  for (const auto& [id, detail] : events) {
    if (id != "download_error") continue;
    ++errors;
    const auto d = parse_json(detail);
    const std::string message = json_str(d, "/message");
    CHECK((message.find("line 3: resourceType") != std::string::npos ||
           message.find("line 2: not valid JSON") != std::string::npos));
  }
  CHECK(errors == 2);
}

TEST_CASE("download: 503 then 200 is retried honouring Retry-After and done") {
  FileServer files;
  const std::string body = synthea_text("Encounter");
  files.put("/busy/Encounter.ndjson", Resource(body).first_answers({503}, 1));
  // A wait longer than max_retry_wait_ms ends the attempt; the delivery's retry takes over.
  files.put("/later/Encounter.ndjson", Resource(body).first_answers({429}, 3600));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string busy = new_log_id();
  const std::string later = new_log_id();
  post_ok(server, export_event(busy, {{"Encounter", files.url("/busy/Encounter.ndjson")}}, false));
  post_ok(server,
          export_event(later, {{"Encounter", files.url("/later/Encounter.ndjson")}}, false));

  const DeliveryInfo done = wait_state(server, busy, "fetch", "done");
  CHECK(done.attempts == 1);  // retried within the attempt
  const auto requests = files.requests("/busy/Encounter.ndjson");
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].arrived - requests[0].arrived >= std::chrono::milliseconds(950));
  CHECK(read_file(downloads / busy / "Encounter.1.ndjson") == body);

  const DeliveryInfo retried = wait_state(server, later, "fetch", "done");
  CHECK(retried.attempts == 2);
  CHECK(files.count("/later/Encounter.ndjson") == 2);
  CHECK(read_file(downloads / later / "Encounter.1.ndjson") == body);
  CHECK_FALSE(
      log_lines_with(server, {"outcome=retry", later, "retry_after_ms=3600000"}, 1).empty());
  // The refused try is in log.ndjson as bulk-data-client logs it.
  bool logged = false;
  for (const auto& [id, detail] : export_log(downloads / later / "log.ndjson")) {
    if (id != "download_error") continue;
    const auto d = parse_json(detail);
    logged = json_raw(d, "/code") == "429" && json_str(d, "/responseHeaders/retry-after") == "3600";
  }
  CHECK(logged);
}

TEST_CASE("download: a transfer cut in the middle resumes with Range and is byte-identical") {
  const std::string plain = generated_ndjson("Observation", 3000, 300);
  const std::string packed_text = generated_ndjson("Observation", 2000, 250);
  const std::string packed = gzip_with_tool(packed_text);
  FileServer files;
  files.put("/cut/ranges.ndjson", Resource(plain).cut_after(plain.size() / 2));
  files.put("/cut/norange.ndjson", Resource(plain).without_ranges().cut_after(plain.size() / 3));
  files.put("/cut/file.ndjson.gz", Resource(packed).cut_after(packed.size() / 2));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id,
                               {{"Observation", files.url("/cut/ranges.ndjson"), 3000},
                                {"Observation", files.url("/cut/norange.ndjson"), 3000},
                                {"Observation", files.url("/cut/file.ndjson.gz"), 2000}},
                               false));
  const DeliveryInfo done = wait_state(server, log_id, "fetch", "done");
  CHECK(done.attempts == 1);

  const auto ranged = files.requests("/cut/ranges.ndjson");
  REQUIRE(ranged.size() == 2);
  CHECK_FALSE(ranged[0].header("Range").has_value());
  CHECK(ranged[1].header("Range") == "bytes=" + std::to_string(plain.size() / 2) + "-");
  CHECK(ranged[1].header("If-Range").has_value());
  CHECK(read_file(downloads / log_id / "Observation.1.ndjson") == plain);
  CHECK_FALSE(log_lines_with(server,
                             {"download_file", "Observation.1.ndjson",
                              "resumed_from=" + std::to_string(plain.size() / 2)},
                             1)
                  .empty());

  // No range support: the whole file again.
  const auto restarted = files.requests("/cut/norange.ndjson");
  REQUIRE(restarted.size() == 2);
  CHECK_FALSE(restarted[1].header("Range").has_value());
  CHECK(read_file(downloads / log_id / "Observation.2.ndjson") == plain);

  // A .gz file resumes over its compressed bytes and is stored decompressed.
  const auto gz = files.requests("/cut/file.ndjson.gz");
  REQUIRE(gz.size() == 2);
  CHECK(gz[1].header("Range") == "bytes=" + std::to_string(packed.size() / 2) + "-");
  CHECK(read_file(downloads / log_id / "Observation.3.ndjson") == packed_text);
  CHECK(unfinished_files(downloads).empty());
}

TEST_CASE("download: kill -9 mid-download then restart completes and nothing is corrupt") {
  const std::string big = generated_ndjson("Observation", 16000, 500);  // 8 MB
  // Not on a chunk boundary: the bytes gathered when the server stalls reach the part file only
  // because the quiet transfer flushes them (Receiver::flush).
  constexpr std::size_t kStall = 3 * 1024 * 1024 + 100003;
  FileServer files;
  files.put("/k/Observation.ndjson", Resource(big).stall_after(kStall));
  files.put("/k/Patient.ndjson", Resource(synthea_text("Patient")));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id,
                               {{"Observation", files.url("/k/Observation.ndjson"), 16000},
                                {"Patient", files.url("/k/Patient.ndjson"), 25}},
                               false));
  const fs::path event_dir = downloads / log_id;
  const fs::path part = event_dir / ".Observation.1.ndjson.part";
  REQUIRE_MESSAGE(poll_until(
                      [&] {
                        std::error_code ec;
                        return files.stalled() && fs::exists(event_dir / "Patient.1.ndjson") &&
                               fs::file_size(part, ec) == kStall;
                      },
                      kDeadline),
                  server.log_tail());
  server.kill9();
  // Killed mid-file: the partial bytes are only in the hidden part file.
  CHECK_FALSE(fs::exists(event_dir / "Observation.1.ndjson"));
  CHECK(fs::file_size(part) == kStall);
  files.release();

  server.start();
  wait_state(server, log_id, "fetch", "done");
  const auto requests = files.requests("/k/Observation.ndjson");
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].header("Range") == "bytes=" + std::to_string(kStall) + "-");
  CHECK(files.count("/k/Patient.ndjson") == 1);  // verified before the kill: not fetched again
  const std::string stored = read_file(event_dir / "Observation.1.ndjson");
  CHECK(stored.size() == big.size());
  CHECK(fbr::core::sha256_hex(stored) == fbr::core::sha256_hex(big));
  CHECK(read_file(event_dir / "Patient.1.ndjson") == synthea_text("Patient"));
  CHECK(unfinished_files(event_dir).empty());
  const auto manifest = parse_json(read_file(event_dir / "manifest.json"));
  REQUIRE(manifest["output"].Size() == 2);
  CHECK(std::string(manifest["output"][0]["sha256"].GetString()) == fbr::core::sha256_hex(big));
  CHECK(manifest["output"][0]["lines"].GetUint64() == 16000);
  for (const auto& [id, detail] : export_log(event_dir / "log.ndjson")) {
    CHECK(id != "<invalid>");
  }
}

TEST_CASE("download: after a restart verified files are not fetched again") {
  FileServer files;
  files.put("/r/Patient.ndjson", Resource(synthea_text("Patient")));
  files.put("/r/Condition.ndjson", Resource(synthea_text("Condition")).first_answers({503}));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  // One try per file and a long delivery back-off: the failed attempt waits for us.
  Server server(
      tmp,
      download_config({download_handler(
          "fetch", downloads,
          R"("transfer_attempts": 1, "retry": {"max_attempts": 5, "initial_backoff_ms": 600000, "max_backoff_ms": 600000})")}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id,
                               {{"Patient", files.url("/r/Patient.ndjson")},
                                {"Condition", files.url("/r/Condition.ndjson")}},
                               false));
  const DeliveryInfo failed = wait_state(server, log_id, "fetch", "failed");
  CHECK(failed.last_error.find("Condition.1.ndjson") != std::string::npos);
  CHECK(failed.last_error.find("HTTP 503") != std::string::npos);

  server.restart();
  const auto replay = [&] {
    const auto r =
        run_cli({"replay", "--config", server.config_path().string(), "--log-id", log_id});
    REQUIRE_MESSAGE(r.exit_code == 0, r.output());
  };
  replay();
  wait_state(server, log_id, "fetch", "done");
  CHECK(files.count("/r/Patient.ndjson") == 1);
  CHECK(files.count("/r/Condition.ndjson") == 2);
  CHECK(read_file(downloads / log_id / "Condition.1.ndjson") == synthea_text("Condition"));

  // Done, then replayed: every file is verified on disk, nothing is fetched.
  replay();
  REQUIRE(poll_until(
      [&] {
        return log_lines_with(server, {"download_complete", log_id, "fetched=0"}).size() == 1;
      },
      kDeadline));
  CHECK(files.count("/r/Patient.ndjson") == 1);
  CHECK(files.count("/r/Condition.ndjson") == 2);

  // A stored file that no longer matches its sha256 is fetched again.
  write_file(downloads / log_id / "Patient.1.ndjson", "tampered\n");
  replay();
  REQUIRE(poll_until(
      [&] {
        // the first completion fetched the Condition file, this one the Patient file
        return log_lines_with(server, {"download_complete", log_id, "fetched=1"}).size() == 2;
      },
      kDeadline));
  CHECK(files.count("/r/Patient.ndjson") == 2);
  CHECK(read_file(downloads / log_id / "Patient.1.ndjson") == synthea_text("Patient"));
}

TEST_CASE("download: a redirect to storage is followed without the access token") {
  const std::string token = "redirect-token-99";
  ::setenv("DL_TEST_REDIRECT_TOKEN", token.c_str(), 1);
  FileServer storage;
  storage.put("/bucket/Patient.ndjson", Resource(synthea_text("Patient")));
  FileServer api;
  api.put("/files/Patient.ndjson",
          Resource().with_bearer(token).redirecting_to(storage.url("/bucket/Patient.ndjson")));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp,
                download_config({download_handler(
                    "fetch", downloads,
                    R"("token_env": "DL_TEST_REDIRECT_TOKEN", "token_hosts": ["127.0.0.1"])")}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, {{"Patient", api.url("/files/Patient.ndjson")}}, true));
  wait_state(server, log_id, "fetch", "done");
  ::unsetenv("DL_TEST_REDIRECT_TOKEN");
  REQUIRE(api.count() == 1);
  CHECK(api.requests()[0].header("Authorization") == "Bearer " + token);
  REQUIRE(storage.count() == 1);
  CHECK_FALSE(storage.requests()[0].header("Authorization").has_value());
  CHECK(read_file(downloads / log_id / "Patient.1.ndjson") == synthea_text("Patient"));
}

TEST_CASE("download: error and deleted files land in their folders and are checked by type") {
  const std::string outcomes =
      R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing"}]})"
      "\n";
  const std::string deleted =
      R"({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]})"
      "\n";
  FileServer files;
  files.put("/e/Patient.ndjson", Resource(synthea_text("Patient")));
  files.put("/e/errors.ndjson", Resource(outcomes));
  files.put("/e/deleted.ndjson", Resource(deleted));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, {{"Patient", files.url("/e/Patient.ndjson")}}, false,
                               {{"OperationOutcome", files.url("/e/errors.ndjson"), 1}},
                               {{"Bundle", files.url("/e/deleted.ndjson")}}));
  wait_state(server, log_id, "fetch", "done");
  const fs::path event_dir = downloads / log_id;
  CHECK(read_file(event_dir / "error" / "OperationOutcome.1.ndjson") == outcomes);
  CHECK(read_file(event_dir / "deleted" / "Bundle.1.ndjson") == deleted);
  CHECK(mode_of(event_dir / "error") == 0700);
  const auto manifest = parse_json(read_file(event_dir / "manifest.json"));
  CHECK(json_str(manifest, "/error/0/file") == "error/OperationOutcome.1.ndjson");
  CHECK(json_str(manifest, "/deleted/0/file") == "deleted/Bundle.1.ndjson");
  std::set<std::string> item_types;
  for (const auto& [id, detail] : export_log(event_dir / "log.ndjson")) {
    if (id == "download_request") item_types.insert(json_str(parse_json(detail), "/itemType"));
  }
  CHECK(item_types == std::set<std::string>{"output", "error", "deleted"});
}

TEST_CASE(
    "download: an error file that is not OperationOutcome or a deleted file not of its type "
    "is dead naming the file") {
  const std::string patients = synthea_text("Patient");
  FileServer files;
  files.put("/bad/patients.ndjson", Resource(patients));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  struct Case {
    std::string what;
    std::vector<EventFile> error;
    std::vector<EventFile> deleted;
    std::string file;      ///< the file the error must name
    std::string expected;  ///< the type it must say was expected
  };
  const std::string url = files.url("/bad/patients.ndjson");
  const std::vector<Case> cases = {
      {"error[] of OperationOutcome holding Patients",
       {{"OperationOutcome", url}},
       {},
       "error/OperationOutcome.1.ndjson",
       "\"OperationOutcome\""},
      // Whatever type an error[] entry claims, its lines must be OperationOutcome.
      {"error[] claiming Patient",
       {{"Patient", url}},
       {},
       "error/Patient.1.ndjson",
       "\"OperationOutcome\""},
      {"deleted[] of Bundle holding Patients",
       {},
       {{"Bundle", url}},
       "deleted/Bundle.1.ndjson",
       "\"Bundle\""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const std::string log_id = new_log_id();
    post_ok(server, export_event(log_id, {}, false, c.error, c.deleted));
    const DeliveryInfo dead = wait_state(server, log_id, "fetch", "dead");
    CHECK_MESSAGE(dead.last_error.find(c.file) != std::string::npos, dead.last_error);
    CHECK_MESSAGE(dead.last_error.find("expected " + c.expected) != std::string::npos,
                  dead.last_error);
    CHECK_FALSE(fs::exists(downloads / log_id / c.file));
    CHECK_FALSE(fs::exists(downloads / log_id / "manifest.json"));
  }
}

TEST_CASE(
    "download: a resumed transfer answered 200 instead of 206 starts the file again - "
    "byte-identical") {
  const std::string plain = generated_ndjson("Observation", 3000, 300);
  FileServer files;
  // Accept-Ranges and an ETag, then a whole 200 answer to the Range request.
  files.put("/ignore/obs.ndjson", Resource(plain).ignoring_range().cut_after(plain.size() / 2));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string log_id = new_log_id();
  post_ok(server,
          export_event(log_id, {{"Observation", files.url("/ignore/obs.ndjson"), 3000}}, false));
  wait_state(server, log_id, "fetch", "done");
  const auto requests = files.requests("/ignore/obs.ndjson");
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].header("Range") == "bytes=" + std::to_string(plain.size() / 2) + "-");
  CHECK(read_file(downloads / log_id / "Observation.1.ndjson") == plain);
  const auto manifest = parse_json(read_file(downloads / log_id / "manifest.json"));
  CHECK(json_raw(manifest, "/output/0/lines") == "3000");
  CHECK(json_raw(manifest, "/output/0/bytes") == std::to_string(plain.size()));
  CHECK(unfinished_files(downloads).empty());
}

TEST_CASE(
    "download: a resume whose If-Range no longer matches (ETag changed) gets the new file "
    "whole - byte-identical") {
  const std::string before = generated_ndjson("Observation", 2000, 300);
  const std::string after = generated_ndjson("Observation", 2000, 200);
  REQUIRE(before != after);
  FileServer files;
  const std::string path = "/changed/obs.ndjson";
  files.put(path,
            Resource(before).stall_after(before.size() / 2).cut_after(before.size() / 2 + 1000));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, {{"Observation", files.url(path), 2000}}, false));
  REQUIRE(poll_until([&] { return files.stalled(); }, kDeadline));
  // The file changes on the server while the first transfer hangs; then that transfer is cut.
  files.put(path, Resource(after));
  files.release();
  wait_state(server, log_id, "fetch", "done");
  const auto requests = files.requests(path);
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].header("Range") == "bytes=" + std::to_string(before.size() / 2 + 1000) + "-");
  CHECK(requests[1].header("If-Range").has_value());
  CHECK(read_file(downloads / log_id / "Observation.1.ndjson") == after);
  const auto manifest = parse_json(read_file(downloads / log_id / "manifest.json"));
  CHECK(json_raw(manifest, "/output/0/lines") == "2000");
  CHECK(json_raw(manifest, "/output/0/bytes") == std::to_string(after.size()));
  CHECK(unfinished_files(downloads).empty());
}

TEST_CASE("download: status 202 events are done without downloading anything") {
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler("fetch", downloads)}));
  const std::string log_id = new_log_id();
  post_ok(server, in_progress_event(log_id));
  const DeliveryInfo done = wait_state(server, log_id, "fetch", "done");
  CHECK(done.attempts == 1);
  CHECK_FALSE(fs::exists(downloads / log_id));
  CHECK_FALSE(log_lines_with(server, {"download_skipped", log_id, "status=202"}, 1).empty());
}
