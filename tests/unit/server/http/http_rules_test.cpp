#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include "server/http/reply.hpp"
#include "server/http/router.hpp"
#include "server/support/log.hpp"

using namespace fbr::server;

TEST_CASE("the token comes from verification-token or Authorization: Bearer") {
  Request request;
  CHECK(header_token(request).empty());
  request.set("verification-token", " abc ");
  CHECK(header_token(request) == "abc");
  Request bearer;
  bearer.set(http::field::authorization, "Bearer xyz");
  CHECK(header_token(bearer) == "xyz");
  Request lower;
  lower.set(http::field::authorization, "bearer xyz");
  CHECK(header_token(lower) == "xyz");
  Request basic;
  basic.set(http::field::authorization, "Basic eHl6");
  CHECK(header_token(basic).empty());
}

TEST_CASE("JSON content types are accepted others are not") {
  CHECK(is_json_content_type(""));
  CHECK(is_json_content_type("application/json"));
  CHECK(is_json_content_type("Application/JSON; charset=utf-8"));
  CHECK(is_json_content_type("application/fhir+json"));
  CHECK(is_json_content_type("application/vnd.redox+json"));
  CHECK_FALSE(is_json_content_type("text/plain"));
  CHECK_FALSE(is_json_content_type("application/x-www-form-urlencoded"));
  CHECK_FALSE(is_json_content_type("+json"));
}

TEST_CASE("replies carry the contract's bodies") {
  rapidjson::Document doc;
  auto accepted = accepted_reply("abc", true, {});
  CHECK(accepted.status == http::status::ok);
  doc.Parse(accepted.body);
  CHECK(std::string(doc["status"].GetString()) == "accepted");
  CHECK(std::string(doc["logId"].GetString()) == "abc");
  CHECK(doc["duplicate"].GetBool());
  CHECK_FALSE(doc.HasMember("warnings"));

  auto warned = accepted_reply("abc", false, {{"/Meta/Logs/0/ID", "not a UUID"}});
  doc.Parse(warned.body);
  CHECK(std::string(doc["warnings"][0]["path"].GetString()) == "/Meta/Logs/0/ID");

  auto invalid = invalid_payload_reply({{"/a", "x"}, {"/b", "y \"quoted\""}});
  CHECK(invalid.status == http::status::bad_request);
  doc.Parse(invalid.body);
  CHECK(std::string(doc["error"].GetString()) == "invalid payload");
  CHECK(doc["details"].Size() == 2);
  CHECK(std::string(doc["details"][1]["message"].GetString()) == "y \"quoted\"");

  auto unavailable = unavailable_reply("disk full");
  CHECK(unavailable.status == http::status::service_unavailable);
  CHECK_FALSE(unavailable.retry_after.empty());

  auto challenge = challenge_reply("C-1");
  CHECK(challenge.body == "C-1");
  CHECK(challenge.content_type == "text/plain");
  CHECK(unauthorized_reply().body == R"({"error":"unauthorized"})");
}

TEST_CASE("log fields render as key=value text or as JSON members") {
  Fields text(fbr::config::LogFormat::kText);
  text.add("log_id", "abc").add("n", 3).add("ok", true).add("msg", "two words");
  CHECK(text.text() == R"( log_id=abc n=3 ok=true msg="two words")");
  Fields json(fbr::config::LogFormat::kJson);
  json.add("log_id", "a\"b").add("n", 3);
  CHECK(json.text() == R"(,"log_id":"a\"b","n":3)");
}

TEST_CASE("log fields write a figure as printf's %.3f does, integers in full") {
  for (const double v : {0.0, 1.0, 0.0005, 0.0015, 1.2345, 2.5e-4, 12.3456789, 999.9995, -3.25,
                         123456789.125, 1e300, -0.0}) {
    char expected[400];
    std::snprintf(expected, sizeof expected, "%.3f", v);
    Fields f(fbr::config::LogFormat::kText);
    f.add("ms", v);
    CHECK(f.text() == std::string(" ms=") + expected);
  }
  Fields extremes(fbr::config::LogFormat::kText);
  extremes.add("min", std::numeric_limits<std::int64_t>::min())
      .add("max", std::numeric_limits<std::uint64_t>::max());
  CHECK(extremes.text() == " min=-9223372036854775808 max=18446744073709551615");
}

TEST_CASE("a figure that is not finite, or the largest double, still makes a log field") {
  Fields f(fbr::config::LogFormat::kJson);
  f.add("a", std::numeric_limits<double>::infinity()).add("b", std::numeric_limits<double>::max());
  char expected[400];
  std::snprintf(expected, sizeof expected, "%.3f", std::numeric_limits<double>::max());
  CHECK(f.text() == std::string(R"(,"a":inf,"b":)") + expected);
}
