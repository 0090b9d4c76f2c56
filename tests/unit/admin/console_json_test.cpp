// The admin API's JSON: an event whole (warnings, each delivery's type, history and files, null
// next attempt), quarantine items, pages with a null cursor at the end; and the commit
// histogram's quantiles behind /api/status.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include "server/journal/console.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {
namespace {

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  REQUIRE_MESSAGE(!doc.HasParseError(), json);
  return doc;
}

TEST_CASE("admin json: an event whole with warnings, types, history and a download's files") {
  EventDetail detail;
  detail.summary.key = "k";
  detail.summary.log_id = "L";
  detail.body = R"({"a":"\u0000 \"quoted\""})";
  detail.attempts.push_back({"att", "2026-12-02T00:00:00.000Z", "10.0.0.7:5", "req", false});
  DeliveryDetail download;
  download.handler = "download";
  download.state = "dead";
  download.history.push_back({1, "2026-12-02T00:00:01.000Z", 41, "dead", "GET u: 404"});
  DeliveryDetail files;
  files.handler = "files";
  files.state = "done";
  files.next_attempt_at_ms = 1'800'000'000'123;
  detail.deliveries = {download, files};
  DetailExtras extras;
  extras.warnings.push_back({"/Meta/Extensions", "unknown"});
  extras.types = {{"download", "download"}, {"files", "file"}};
  Activity::FileProgress file;
  file.handler = "download";
  file.url = "https://x/1";
  file.bytes = 5;
  extras.files["download"] = {file};

  const auto doc = parse(to_json(detail, extras));
  CHECK(std::string(doc["body"].GetString()) == detail.body);
  CHECK(std::string(doc["warnings"][0]["path"].GetString()) == "/Meta/Extensions");
  CHECK(std::string(doc["attempts"][0]["remote_addr"].GetString()) == "10.0.0.7:5");
  const auto& d0 = doc["deliveries"][0];
  CHECK(std::string(d0["type"].GetString()) == "download");
  CHECK(d0["next_attempt_at"].IsNull());
  CHECK(d0["history"][0]["duration_ms"].GetInt64() == 41);
  CHECK(std::string(d0["files"][0]["url"].GetString()) == "https://x/1");
  CHECK_FALSE(d0["files"][0].HasMember("handler"));  // nested under its delivery
  CHECK(d0["files"][0]["expected"].IsNull());
  const auto& d1 = doc["deliveries"][1];
  CHECK(std::string(d1["next_attempt_at"].GetString()) == "2027-01-15T08:00:00.123Z");
  CHECK_FALSE(d1.HasMember("files"));
  // A handler no longer configured has no type.
  extras.types.erase("files");
  CHECK(parse(to_json(detail, extras))["deliveries"][1]["type"].IsNull());
}

TEST_CASE("admin json: pages end with a null cursor, quarantine items keep their errors") {
  EventPage page;
  CHECK(to_json(page) == R"({"events":[],"next_cursor":null})");
  page.next_cursor = "MTIz";
  CHECK(parse(to_json(page))["next_cursor"].GetString() == std::string("MTIz"));
  QuarantineRow row;
  row.id = "7";
  row.errors_json = R"([{"path":"/status","message":"required"}])";
  row.body = "{}";
  row.bytes = 2;
  const auto item = parse(to_json(row, false));
  CHECK_FALSE(item.HasMember("body"));
  CHECK(std::string(item["errors"][0]["path"].GetString()) == "/status");
  CHECK(std::string(parse(to_json(row, true))["body"].GetString()) == "{}");
  row.errors_json.clear();
  CHECK(parse(to_json(row, false))["errors"].IsArray());
  QuarantinePage rows;
  rows.items = {row};
  CHECK(parse(to_json(rows))["items"].Size() == 1);
}

TEST_CASE("admin json: the commit latency's quantiles interpolate within their bucket") {
  Metrics metrics;
  CHECK_FALSE(metrics.commit_quantile(0.5).has_value());
  for (int i = 0; i < 100; ++i)
    metrics.commit(0.0007);  // all in (0.5 ms, 1 ms]
  const double p50 = *metrics.commit_quantile(0.5);
  CHECK(p50 > 0.0005);
  CHECK(p50 <= 0.001);
  metrics.commit(30.0);  // past the last bound: that bound
  CHECK(*metrics.commit_quantile(0.999) == doctest::Approx(10.0));
  CHECK(*metrics.commit_quantile(0.5) <= 0.001);
}

}  // namespace
}  // namespace fbr::server
