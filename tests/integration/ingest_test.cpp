// POST /webhook end to end: accepted events are journaled and logged, duplicates are recognized,
// unauthenticated and invalid requests store nothing (or, in quarantine mode, only the quarantine).
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

namespace {

const std::string kSeedAttemptId = "925d1617-2fe0-468c-a14c-f8c04b572c54";

/// The JSON Pointer paths listed in a 400/quarantine `details` (or errors) array; every entry
/// must also carry a non-empty message.
std::set<std::string> error_paths(const rapidjson::Value& details) {
  std::set<std::string> paths;
  REQUIRE(details.IsArray());
  for (const auto& entry : details.GetArray()) {
    REQUIRE(entry.IsObject());
    REQUIRE(entry.HasMember("path"));
    REQUIRE(entry["path"].IsString());
    REQUIRE(entry.HasMember("message"));
    REQUIRE(entry["message"].IsString());
    CHECK(entry["message"].GetStringLength() > 0);
    paths.insert(entry["path"].GetString());
  }
  return paths;
}

}  // namespace

TEST_CASE("ingest: the seed example is accepted - journaled byte for byte and logged") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  const std::string body = fixture("complete.json");

  const auto r = http(server.port(), post_event(body));
  REQUIRE(r.status == 200);
  CHECK(r.header("Content-Type").value_or("<none>").find("json") != std::string::npos);
  const auto doc = parse_json(r.body);
  REQUIRE_MESSAGE(!doc.HasParseError(), "200 body is not JSON: ", r.body);
  CHECK(json_str(doc, "/status") == "accepted");
  CHECK(json_str(doc, "/logId") == kSeedLogId);
  CHECK(json_raw(doc, "/duplicate") == "false");
  const auto warnings = json_raw(doc, "/warnings");  // the seed is clean: nothing to warn about
  CHECK((warnings == "<absent>" || warnings == "[]"));

  const Journal journal(server.journal_path());
  const auto events =
      journal.query("SELECT key, log_id, status, output_count, body, received_at FROM events");
  REQUIRE(events.size() == 1);
  CHECK(events[0][0].value_or("<NULL>") == kSeedLogId);
  CHECK(events[0][1].value_or("<NULL>") == kSeedLogId);
  CHECK(events[0][2].value_or("<NULL>") == "200");
  CHECK(events[0][3].value_or("<NULL>") == "2");
  CHECK(events[0][4].value_or("<NULL>") == body);  // the raw body, byte-identical
  CHECK_FALSE(events[0][5].value_or("").empty());

  const auto attempts = journal.query(
      "SELECT attempt_id, received_at, remote_addr, request_id, duplicate FROM event_attempts "
      "WHERE event_key = ?",
      {std::string(kSeedLogId)});
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0][0].value_or("<NULL>") == kSeedAttemptId);
  CHECK_FALSE(attempts[0][1].value_or("").empty());
  CHECK(attempts[0][2].value_or("<NULL>").find("127.0.0.1") != std::string::npos);
  CHECK(attempts[0][3].value_or("<NULL>") == r.header("X-Request-Id").value_or("<none>"));
  CHECK(attempts[0][4].value_or("<NULL>") == "0");

  const auto line = server.wait_for_line({"log_id=" + std::string(kSeedLogId)});
  REQUIRE_MESSAGE(line.has_value(), "no log line with log_id=", kSeedLogId);
  CHECK(line->find("attempt_id=" + kSeedAttemptId) != std::string::npos);
  CHECK(line->find("duplicate=false") != std::string::npos);
}

TEST_CASE("ingest: an event with findings worth a warning is accepted with warnings") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  // A Log ID that is not a UUID is a warning, not an error.
  const auto r = http(server.port(), post_event(event_with_log_id("not-a-uuid-42")));
  REQUIRE(r.status == 200);
  const auto doc = parse_json(r.body);
  REQUIRE(!doc.HasParseError());
  CHECK(json_str(doc, "/status") == "accepted");
  CHECK(json_str(doc, "/logId") == "not-a-uuid-42");
  REQUIRE(doc.HasMember("warnings"));
  REQUIRE(doc["warnings"].IsArray());
  CHECK(doc["warnings"].Size() >= 1);
  CHECK(journal_count(server, "events", "log_id = ?", {"not-a-uuid-42"}) == 1);
}

TEST_CASE("ingest: a repeated Log ID is a duplicate - one event row and two attempts") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  const std::string body = fixture("complete.json");

  const auto first = http(server.port(), post_event(body));
  REQUIRE(first.status == 200);
  CHECK(json_raw(parse_json(first.body), "/duplicate") == "false");

  const auto again = http(server.port(), post_event(body));
  REQUIRE(again.status == 200);
  const auto doc = parse_json(again.body);
  CHECK(json_str(doc, "/status") == "accepted");
  CHECK(json_str(doc, "/logId") == kSeedLogId);
  CHECK(json_raw(doc, "/duplicate") == "true");

  const Journal journal(server.journal_path());
  CHECK(journal.count("events") == 1);
  CHECK(journal.count("event_attempts", "event_key = ?", {std::string(kSeedLogId)}) == 2);
  CHECK(journal.count("event_attempts", "event_key = ? AND duplicate = 1", {std::string(kSeedLogId)}) ==
        1);
  CHECK(server.wait_for_line({"log_id=" + std::string(kSeedLogId), "duplicate=true"}).has_value());
}

TEST_CASE("auth: a wrong or missing token gets 401 and nothing is stored - Bearer works") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  const std::string body = fixture("complete.json");
  const std::string wrong = "wrong-token-5c0ffee-9d1";

  auto with_wrong = post_event(body, wrong);
  with_wrong.headers.emplace_back("X-Request-Id", "itest-wrong-token");
  const auto r1 = http(server.port(), with_wrong);
  CHECK(r1.status == 401);
  CHECK(json_str(parse_json(r1.body), "/error") == "unauthorized");

  HttpRequest missing;
  missing.headers = {{"Content-Type", "application/json"}, {"X-Request-Id", "itest-no-token"}};
  missing.body = body;
  const auto r2 = http(server.port(), missing);
  CHECK(r2.status == 401);
  CHECK(json_str(parse_json(r2.body), "/error") == "unauthorized");

  HttpRequest bearer_wrong = missing;
  bearer_wrong.headers = {{"Content-Type", "application/json"},
                          {"Authorization", "Bearer " + wrong},
                          {"X-Request-Id", "itest-bearer-wrong"}};
  CHECK(http(server.port(), bearer_wrong).status == 401);

  CHECK(journal_count(server, "events") == 0);
  CHECK(journal_count(server, "event_attempts") == 0);
  CHECK(journal_count(server, "quarantine") == 0);

  // The request lines are written: now the token's absence from the log means something.
  REQUIRE(server.wait_for_log("itest-wrong-token"));
  REQUIRE(server.wait_for_log("itest-bearer-wrong"));
  CHECK(server.log().find(wrong) == std::string::npos);

  HttpRequest bearer = missing;
  bearer.headers = {{"Content-Type", "application/json"},
                    {"Authorization", "Bearer test-token"},
                    {"X-Request-Id", "itest-bearer-ok"}};
  const auto r3 = http(server.port(), bearer);
  CHECK(r3.status == 200);
  CHECK(json_raw(parse_json(r3.body), "/duplicate") == "false");  // the 401s stored nothing
  CHECK(journal_count(server, "events") == 1);
  REQUIRE(server.wait_for_log("itest-bearer-ok"));
  REQUIRE(server.wait_for_log("log_id=" + std::string(kSeedLogId)));
  CHECK(server.log().find("test-token") == std::string::npos);
}

TEST_CASE("validation: an invalid body gets 400 listing every error and stores nothing") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  const auto r = http(server.port(), post_event(fixture("invalid-several-errors.json")));
  REQUIRE(r.status == 400);
  const auto doc = parse_json(r.body);
  REQUIRE_MESSAGE(!doc.HasParseError(), "400 body is not JSON: ", r.body);
  CHECK(json_str(doc, "/error") == "invalid payload");
  REQUIRE(doc.HasMember("details"));
  const auto paths = error_paths(doc["details"]);
  for (const std::string expected : {"/Meta/DataModel", "/status", "/output/0/url"}) {
    CHECK_MESSAGE(paths.count(expected) == 1, "missing error at ", expected, " in ", r.body);
  }

  for (const std::string not_json : {"{not json", "", "null", "[1,2]"}) {
    CAPTURE(not_json);
    const auto bad = http(server.port(), post_event(not_json));
    CHECK(bad.status == 400);
    const auto bad_doc = parse_json(bad.body);
    CHECK(json_str(bad_doc, "/error") == "invalid payload");
    CHECK(json_raw(bad_doc, "/details") != "<absent>");
    CHECK(json_raw(bad_doc, "/details") != "[]");
  }

  CHECK(journal_count(server, "events") == 0);
  CHECK(journal_count(server, "event_attempts") == 0);
  CHECK(journal_count(server, "quarantine") == 0);

  // The rejected body shares the seed's Log ID: the seed is still new.
  const auto seed = http(server.port(), post_event(fixture("complete.json")));
  REQUIRE(seed.status == 200);
  CHECK(json_raw(parse_json(seed.body), "/duplicate") == "false");
}

TEST_CASE("quarantine: an invalid body is stored in quarantine and answered 200 quarantined") {
  TempDir dir;
  ServerConfig config;
  config.invalid_payloads = "quarantine";
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());
  const std::string body = fixture("invalid-several-errors.json");

  auto request = post_event(body);
  request.headers.emplace_back("X-Request-Id", "itest-quarantine-1");
  const auto r = http(server.port(), request);
  REQUIRE(r.status == 200);
  const auto doc = parse_json(r.body);
  REQUIRE_MESSAGE(!doc.HasParseError(), "200 body is not JSON: ", r.body);
  CHECK(json_str(doc, "/status") == "quarantined");

  {
    const Journal journal(server.journal_path());
    const auto rows = journal.query("SELECT body, errors, request_id, remote_addr FROM quarantine");
    REQUIRE(rows.size() == 1);
    CHECK(rows[0][0].value_or("<NULL>") == body);
    const auto errors = parse_json(rows[0][1].value_or("<NULL>"));
    REQUIRE_MESSAGE(!errors.HasParseError(), "quarantine.errors is not JSON");
    const auto paths = error_paths(errors);
    for (const std::string expected : {"/Meta/DataModel", "/status", "/output/0/url"}) {
      CHECK_MESSAGE(paths.count(expected) == 1, "quarantine.errors lacks ", expected);
    }
    CHECK(rows[0][2].value_or("<NULL>") == "itest-quarantine-1");
    CHECK(rows[0][3].value_or("<NULL>").find("127.0.0.1") != std::string::npos);
    CHECK(journal.count("events") == 0);
  }

  // Authentication still comes first: an unauthenticated invalid body is not quarantined.
  CHECK(http(server.port(), post_event(body, "wrong-token")).status == 401);
  CHECK(journal_count(server, "quarantine") == 1);

  // Valid events are unaffected by the mode.
  const auto valid = http(server.port(), post_event(fixture("complete.json")));
  CHECK(valid.status == 200);
  CHECK(json_str(parse_json(valid.body), "/status") == "accepted");
  CHECK(journal_count(server, "events") == 1);
}
