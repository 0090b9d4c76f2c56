// parse_event, event_key and parse_challenge against every rule of PRODUCT.md "The model".
#include "core/event.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/text.hpp"

using fbr::core::Diagnostic;
using fbr::core::parse_challenge;
using fbr::core::parse_event;
using fbr::core::ParseResult;

namespace {

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(FBR_FIXTURES) + "/events/" + name, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const std::string& complete() {
  static const std::string body = fixture("complete.json");
  return body;
}

/// `json` with the value at `pointer` replaced by (or added as) the JSON text `value`, or removed
/// when `value` is nullopt.
std::string edit(const std::string& json, const char* pointer,
                 std::optional<std::string_view> value) {
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  const rapidjson::Pointer where(pointer);
  REQUIRE(where.IsValid());
  if (value) {
    rapidjson::Document parsed;
    parsed.Parse(value->data(), value->size());
    REQUIRE_FALSE(parsed.HasParseError());
    rapidjson::Value copy(parsed, doc.GetAllocator());
    where.Set(doc, copy, doc.GetAllocator());
  } else {
    REQUIRE(where.Erase(doc));
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

std::string with(const char* pointer, std::string_view value) {
  return edit(complete(), pointer, value);
}

std::string without(const char* pointer) {
  return edit(complete(), pointer, std::nullopt);
}

std::string replace_once(std::string text, std::string_view from, std::string_view to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  return text;
}

std::string dump(const std::vector<Diagnostic>& list) {
  std::string out;
  for (const auto& d : list)
    out += "[" + d.path + "] " + d.message + "\n";
  return out;
}

/// Exactly one error, at `path`, saying `message`; no event.
void expect_only_error(const ParseResult& r, const std::string& path, const std::string& message) {
  INFO(dump(r.errors));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].path == path);
  CHECK(r.errors[0].message == message);
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.event.has_value());
}

/// Valid, with exactly one warning, at `path`, saying `message`.
void expect_only_warning(const ParseResult& r, const std::string& path,
                         const std::string& message) {
  INFO(dump(r.errors) << dump(r.warnings));
  REQUIRE(r.ok());
  REQUIRE(r.event.has_value());
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].path == path);
  CHECK(r.warnings[0].message == message);
}

void expect_clean(const ParseResult& r) {
  INFO(dump(r.errors) << dump(r.warnings));
  CHECK(r.ok());
  CHECK(r.event.has_value());
  CHECK(r.warnings.empty());
}

bool has_path(const std::vector<Diagnostic>& list, const std::string& path) {
  return std::any_of(list.begin(), list.end(), [&](const Diagnostic& d) { return d.path == path; });
}

}  // namespace

TEST_SUITE("core/event") {
  TEST_CASE("complete.json parses into the typed event") {
    const ParseResult r = parse_event(complete());
    expect_clean(r);
    REQUIRE(r.event);
    const auto& e = *r.event;
    CHECK(e.meta.data_model == "FHIR Bulk Data Access");
    CHECK(e.meta.event_type == "status-check-response");
    CHECK(e.meta.event_date_time == "2026-05-28T22:44:52.399Z");
    CHECK(e.meta.test == true);
    REQUIRE(e.meta.source);
    CHECK(e.meta.source->id == "7ce6f387-c33c-417d-8682-81e83628cbd9");
    CHECK(e.meta.source->name == "Redox Dev Tools");
    REQUIRE(e.meta.destinations.size() == 1);
    CHECK(e.meta.destinations[0].id == "af394f14-b34a-464f-8d24-895f370af4c9");
    CHECK(e.meta.destinations[0].name == "Redox EMR");
    REQUIRE(e.meta.logs.size() == 1);
    CHECK_FALSE(e.meta.facility_code.has_value());
    CHECK(e.status == 200);
    CHECK_FALSE(e.progress.has_value());
    CHECK(e.transaction_time == "2024-02-20T10:00:00Z");
    CHECK(e.request == "/fhir/$export?_since=2024-01-01");
    CHECK(e.requires_access_token == true);
    REQUIRE(e.output.size() == 2);
    CHECK(e.output[0].type == "Patient");
    CHECK(e.output[0].url ==
          "https://api.redoxengine.com/fhir/R4/example-destination/Development/BulkStatus/e4b4a01a/"
          "patient-file-001.ndjson.gz");
    CHECK_FALSE(e.output[0].count.has_value());
    CHECK(e.output[1].type == "Encounter");
    CHECK(e.error.empty());
    CHECK(e.deleted.empty());
    CHECK(e.key == "d9f5d293-7110-461e-a875-3beb089e79f3");
    CHECK(e.log_id() == "d9f5d293-7110-461e-a875-3beb089e79f3");
    CHECK(e.attempt_id() == "925d1617-2fe0-468c-a14c-f8c04b572c54");
  }

  TEST_CASE("complete-status-as-string.json parses status \"200\" becomes 200") {
    const ParseResult r = parse_event(fixture("complete-status-as-string.json"));
    expect_clean(r);
    REQUIRE(r.event);
    CHECK(r.event->status == 200);
    CHECK(r.event->key == "5f7e2a10-8c4b-4d9e-a1f3-2b6c7d8e9f01");
    CHECK(r.event->attempt_id().empty());  // AttemptID is null
  }

  TEST_CASE("in-progress.json parses: 202 progress empty output null transactionTime") {
    const ParseResult r = parse_event(fixture("in-progress.json"));
    expect_clean(r);
    REQUIRE(r.event);
    CHECK(r.event->status == 202);
    CHECK(r.event->progress == "50%");
    CHECK(r.event->output.empty());
    CHECK_FALSE(r.event->transaction_time.has_value());
    CHECK(r.event->key == "0b6c1d52-3f2a-4f57-9a43-5d0f1c6a9e11");
  }

  TEST_CASE("invalid-several-errors.json reports every error at once") {
    const ParseResult r = parse_event(fixture("invalid-several-errors.json"));
    INFO(dump(r.errors));
    CHECK_FALSE(r.ok());
    CHECK_FALSE(r.event.has_value());
    REQUIRE(r.errors.size() == 3);
    CHECK(r.errors[0] ==
          Diagnostic{"/Meta/DataModel", R"(must be "FHIR Bulk Data Access", got "PatientAdmin")"});
    CHECK(r.errors[1] == Diagnostic{"/status", "is required"});
    CHECK(r.errors[2] ==
          Diagnostic{"/output/0/url", R"(must be an absolute http(s) URL, got "not a url")"});
  }

  TEST_CASE("many independent errors are all reported") {
    std::string body = with("/Meta/EventType", R"("other")");
    body = edit(body, "/Meta/Test", R"("yes")");
    body = edit(body, "/Meta/Source", "[]");
    body = edit(body, "/status", "201");
    body = edit(body, "/progress", "50");
    body = edit(body, "/output/1/type", "7");
    body = edit(body, "/output/1/count", "-2");
    const ParseResult r = parse_event(body);
    INFO(dump(r.errors));
    CHECK(r.errors.size() == 7);
    for (const char* path : {"/Meta/EventType", "/Meta/Test", "/Meta/Source", "/status",
                             "/progress", "/output/1/type", "/output/1/count"}) {
      CHECK_MESSAGE(has_path(r.errors, path), path);
    }
  }

  TEST_CASE(
      "a body that is not JSON is one error at the root, with RapidJSON's reason and offset") {
    expect_only_error(parse_event("{"), "",
                      "is not valid JSON at offset 1: Missing a name for object member");
    expect_only_error(parse_event(""), "", "is not valid JSON at offset 0: The document is empty");
    expect_only_error(parse_event(R"({"a":1} x)"), "",
                      "is not valid JSON at offset 8: The document root must not be followed by "
                      "other values");
    for (const std::string_view body : {"[1,2", "{'a':1}", "{\"a\":tru}", "NaN"}) {
      const ParseResult r = parse_event(body);
      INFO(body);
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].path.empty());
      CHECK(r.errors[0].message.rfind("is not valid JSON at offset ", 0) == 0);
    }
  }

  TEST_CASE("a UTF-8 byte order mark is skipped (RFC 8259 allows ignoring it)") {
    expect_clean(parse_event("\xEF\xBB\xBF" + complete()));
  }

  TEST_CASE("invalid UTF-8 and raw NUL bytes are not JSON") {
    const std::string latin1 = replace_once(complete(), "Redox EMR", "Redox \xC9MR");
    const ParseResult r = parse_event(latin1);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].path.empty());
    CHECK(r.errors[0].message.find("Invalid encoding") != std::string::npos);

    std::string with_nul = complete();
    const std::size_t end = with_nul.size();
    with_nul += std::string_view("\0junk", 5);
    expect_only_error(parse_event(with_nul), "",
                      "is not valid JSON at offset " + std::to_string(end) + ": a NUL byte");
  }

  TEST_CASE("a body that is not UTF-8 gets the parser's own message, wherever the bad bytes are") {
    // The parser checks each string only when the body as a whole is not well-formed UTF-8: the
    // answer must be the one a checking parser gives (its message and offset).
    for (const std::string_view bad : {"\xC9", "\xED\xA0\x80", "\xC0\xAF", "\xF5\x80\x80\x80",
                                       "\xF4\x90\x80\x80", "\xE2\x9C", "\x80"}) {
      for (const std::string_view at : {"Redox EMR", "Patient", "2024-02-20T10:00:00Z"}) {
        const std::string body = replace_once(complete(), at, std::string(bad) + std::string(at));
        rapidjson::Document checked;
        checked.Parse<rapidjson::kParseValidateEncodingFlag>(body.data(), body.size());
        REQUIRE(checked.HasParseError());
        const ParseResult r = parse_event(body);
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].message == "is not valid JSON at offset " +
                                         std::to_string(checked.GetErrorOffset()) +
                                         ": Invalid encoding in string");
        CHECK_FALSE(r.event.has_value());
      }
    }
  }

  TEST_CASE("well-formed UTF-8 in the strings is kept byte for byte") {
    const std::string name = "Redox \xC3\x89MR \xE2\x9C\x93 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF";
    const ParseResult r = parse_event(replace_once(complete(), "Redox EMR", name));
    REQUIRE(r.ok());
    CHECK(r.event->meta.destinations[0].name == name);
  }

  TEST_CASE("is_valid_utf8 accepts exactly the strings a UTF-8 checking parser accepts") {
    // The parse relies on it: a body is_valid_utf8 passes is parsed without the parser's check.
    std::size_t compared = 0;
    const auto compare = [&](const std::string& bytes) {
      for (const char c : bytes) {
        if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\')
          return;  // JSON's own rules
      }
      const std::string json = "\"" + bytes + "\"";
      rapidjson::Document doc;
      doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
      CHECK_MESSAGE(doc.HasParseError() == !fbr::core::is_valid_utf8(bytes), bytes);
      ++compared;
    };
    for (unsigned a = 0; a < 256; ++a) {
      for (unsigned b = 0; b < 256; ++b) {
        compare({static_cast<char>(a), static_cast<char>(b)});
        if (a < 0xC0) continue;
        for (const unsigned c : {0x41U, 0x7FU, 0x80U, 0x8FU, 0x90U, 0x9FU, 0xA0U, 0xBFU, 0xC0U}) {
          compare({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
          compare({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c), '\x80'});
          compare({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c), '\xC0'});
        }
      }
    }
    CHECK(compared > 100000);
  }

  TEST_CASE("the root must be an object") {
    expect_only_error(parse_event("[]"), "", "must be an object, got array");
    expect_only_error(parse_event("42"), "", "must be an object, got number");
    expect_only_error(parse_event("\"x\""), "", "must be an object, got string");
    expect_only_error(parse_event("null"), "", "must be an object, got null");
    expect_only_error(parse_event("true"), "", "must be an object, got boolean");
  }

  TEST_CASE("Meta is required and must be an object") {
    expect_only_error(parse_event(without("/Meta")), "/Meta", "is required");
    expect_only_error(parse_event(with("/Meta", "[]")), "/Meta", "must be an object, got array");
    expect_only_error(parse_event(with("/Meta", "null")), "/Meta", "must be an object, got null");
    expect_only_error(parse_event(with("/Meta", "\"x\"")), "/Meta",
                      "must be an object, got string");
  }

  TEST_CASE("Meta.DataModel must be \"FHIR Bulk Data Access\"") {
    expect_only_error(parse_event(with("/Meta/DataModel", R"("PatientAdmin")")), "/Meta/DataModel",
                      R"(must be "FHIR Bulk Data Access", got "PatientAdmin")");
    expect_only_error(parse_event(without("/Meta/DataModel")), "/Meta/DataModel", "is required");
    expect_only_error(parse_event(with("/Meta/DataModel", "5")), "/Meta/DataModel",
                      R"(must be "FHIR Bulk Data Access", got 5)");
    expect_only_error(parse_event(with("/Meta/DataModel", "null")), "/Meta/DataModel",
                      R"(must be "FHIR Bulk Data Access", got null)");
    expect_only_error(parse_event(with("/Meta/DataModel", R"("fhir bulk data access")")),
                      "/Meta/DataModel",
                      R"(must be "FHIR Bulk Data Access", got "fhir bulk data access")");
  }

  TEST_CASE("Meta.EventType must be \"status-check-response\"") {
    expect_only_error(parse_event(with("/Meta/EventType", R"("status-check")")), "/Meta/EventType",
                      R"(must be "status-check-response", got "status-check")");
    expect_only_error(parse_event(without("/Meta/EventType")), "/Meta/EventType", "is required");
    expect_only_error(parse_event(with("/Meta/EventType", "{}")), "/Meta/EventType",
                      R"(must be "status-check-response", got object)");
  }

  TEST_CASE("string-or-null fields: null is fine any other type is an error") {
    for (const char* path :
         {"/Meta/EventDateTime", "/Meta/FacilityCode", "/Meta/Source/ID", "/Meta/Source/Name",
          "/Meta/Destinations/0/ID", "/Meta/Destinations/0/Name", "/Meta/Logs/0/ID",
          "/Meta/Logs/0/AttemptID", "/progress", "/transactionTime", "/request"}) {
      CAPTURE(path);
      const ParseResult null_ok = parse_event(with(path, "null"));
      CHECK(null_ok.ok());
      // A null transactionTime leaves status 200 without one: that warning only.
      CHECK(null_ok.warnings.size() == (std::string_view(path) == "/transactionTime" ? 1U : 0U));
      CHECK(parse_event(without(path)).ok());
      expect_only_error(parse_event(with(path, "5")), path, "must be a string or null, got number");
      expect_only_error(parse_event(with(path, "true")), path,
                        "must be a string or null, got boolean");
      expect_only_error(parse_event(with(path, "{}")), path,
                        "must be a string or null, got object");
      expect_only_error(parse_event(with(path, "[\"x\"]")), path,
                        "must be a string or null, got array");
    }
  }

  TEST_CASE("string-or-null fields are mapped when set and absent when null") {
    const ParseResult r = parse_event(with("/Meta/FacilityCode", R"("RES")"));
    REQUIRE(r.event);
    CHECK(r.event->meta.facility_code == "RES");
    const ParseResult n = parse_event(with("/request", "null"));
    REQUIRE(n.event);
    CHECK_FALSE(n.event->request.has_value());
  }

  TEST_CASE("boolean-or-null fields: null is fine any other type is an error") {
    for (const char* path : {"/Meta/Test", "/requiresAccessToken"}) {
      CAPTURE(path);
      expect_clean(parse_event(with(path, "null")));
      expect_clean(parse_event(with(path, "false")));
      expect_clean(parse_event(without(path)));
      expect_only_error(parse_event(with(path, R"("true")")), path,
                        "must be a boolean or null, got string");
      expect_only_error(parse_event(with(path, "1")), path,
                        "must be a boolean or null, got number");
    }
    const ParseResult r = parse_event(with("/Meta/Test", "null"));
    REQUIRE(r.event);
    CHECK_FALSE(r.event->meta.test.has_value());
    const ParseResult f = parse_event(with("/requiresAccessToken", "false"));
    REQUIRE(f.event);
    CHECK(f.event->requires_access_token == false);
  }

  TEST_CASE("Meta.Source must be an object when present") {
    expect_clean(parse_event(without("/Meta/Source")));
    expect_only_error(parse_event(with("/Meta/Source", R"("Redox")")), "/Meta/Source",
                      "must be an object, got string");
    expect_only_error(parse_event(with("/Meta/Source", "null")), "/Meta/Source",
                      "must be an object, got null");
    expect_only_error(parse_event(with("/Meta/Source", "[]")), "/Meta/Source",
                      "must be an object, got array");
    const ParseResult r = parse_event(without("/Meta/Source"));
    REQUIRE(r.event);
    CHECK_FALSE(r.event->meta.source.has_value());
  }

  TEST_CASE("Meta.Destinations and Meta.Logs must be arrays of objects when present") {
    for (const char* path : {"/Meta/Destinations", "/Meta/Logs"}) {
      CAPTURE(path);
      CHECK(parse_event(without(path)).ok());
      CHECK(parse_event(with(path, "[]")).ok());
      expect_only_error(parse_event(with(path, "{}")), path, "must be an array, got object");
      expect_only_error(parse_event(with(path, "null")), path, "must be an array, got null");
      expect_only_error(parse_event(with(path, R"("x")")), path, "must be an array, got string");
      expect_only_error(parse_event(with(path, R"([{}, "x"])")), std::string(path) + "/1",
                        "must be an object, got string");
      expect_only_error(parse_event(with(path, R"([[]])")), std::string(path) + "/0",
                        "must be an object, got array");
    }
  }

  TEST_CASE("several destinations and logs are all mapped in order") {
    const ParseResult r = parse_event(with("/Meta/Destinations", R"([
      {"ID": "af394f14-b34a-464f-8d24-895f370af4c9", "Name": "A"},
      {"ID": null, "Name": "B"}, {}])"));
    expect_clean(r);
    REQUIRE(r.event);
    REQUIRE(r.event->meta.destinations.size() == 3);
    CHECK(r.event->meta.destinations[1].name == "B");
    CHECK_FALSE(r.event->meta.destinations[1].id.has_value());
    CHECK_FALSE(r.event->meta.destinations[2].name.has_value());
  }

  TEST_CASE("status: 200 and 202 as number or string") {
    for (const auto& json_expected : std::vector<std::pair<std::string, int>>{
             {"200", 200}, {"202", 202}, {R"("200")", 200}, {R"("202")", 202}}) {
      const auto& json = json_expected.first;
      const auto& expected = json_expected.second;
      CAPTURE(json);
      const ParseResult r = parse_event(with("/status", json));
      REQUIRE(r.ok());
      REQUIRE(r.event);
      CHECK(r.event->status == expected);
    }
  }

  TEST_CASE("status: anything else is an error that shows the value") {
    for (const auto& json_shown :
         std::vector<std::pair<std::string, std::string>>{{"201", "201"},
                                                          {R"("abc")", R"("abc")"},
                                                          {"200.5", "200.5"},
                                                          {"200.0", "200.0"},
                                                          {"true", "true"},
                                                          {"null", "null"},
                                                          {R"("201")", R"("201")"},
                                                          {R"(" 200")", R"(" 200")"},
                                                          {R"("200 ")", R"("200 ")"},
                                                          {"-200", "-200"},
                                                          {"[200]", "array"},
                                                          {R"({"code":200})", "object"}}) {
      const auto& json = json_shown.first;
      const auto& shown = json_shown.second;
      CAPTURE(json);
      expect_only_error(parse_event(with("/status", json)), "/status",
                        "must be 200 or 202, got " + shown);
    }
    expect_only_error(parse_event(without("/status")), "/status", "is required");
  }

  TEST_CASE("output is required and must be an array of objects") {
    expect_only_error(parse_event(without("/output")), "/output", "is required");
    expect_only_error(parse_event(with("/output", "{}")), "/output",
                      "must be an array, got object");
    expect_only_error(parse_event(with("/output", "null")), "/output",
                      "must be an array, got null");
    expect_only_error(parse_event(with("/output", R"("x")")), "/output",
                      "must be an array, got string");
    expect_only_error(parse_event(with("/output/1", R"("x")")), "/output/1",
                      "must be an object, got string");
    expect_clean(parse_event(with("/output", "[]")));
  }

  TEST_CASE("an output entry needs a string type and a string url") {
    expect_only_error(parse_event(without("/output/0/type")), "/output/0/type", "is required");
    expect_only_error(parse_event(without("/output/1/url")), "/output/1/url", "is required");
    expect_only_error(parse_event(with("/output/0/type", "5")), "/output/0/type",
                      "must be a string, got number");
    expect_only_error(parse_event(with("/output/0/type", "null")), "/output/0/type",
                      "must be a string, got null");
    expect_only_error(parse_event(with("/output/0/url", "null")), "/output/0/url",
                      "must be a string, got null");
    expect_only_error(parse_event(with("/output/0/url", "{}")), "/output/0/url",
                      "must be a string, got object");
    const ParseResult both = parse_event(with("/output/0", "{}"));
    CHECK(both.errors == std::vector<Diagnostic>{{"/output/0/type", "is required"},
                                                 {"/output/0/url", "is required"}});
  }

  TEST_CASE("an output url must be an absolute http(s) URL") {
    for (const char* url :
         {"not a url", "ftp://example.com/a.ndjson", "/relative/a.ndjson", "https://",
          "https:///path", "file:///etc/passwd", "https://host/a b.ndjson", ""}) {
      CAPTURE(url);
      const std::string json = "\"" + fbr::core::json_escape(url) + "\"";
      expect_only_error(parse_event(with("/output/0/url", json)), "/output/0/url",
                        "must be an absolute http(s) URL, got " + json);
    }
    expect_clean(parse_event(with("/output/0/url", R"("http://10.0.0.1:8080/x.ndjson")")));
  }

  TEST_CASE("output.count when present is a non-negative integer") {
    const ParseResult r = parse_event(with("/output/0/count", "1234"));
    expect_clean(r);
    REQUIRE(r.event);
    CHECK(r.event->output[0].count == 1234);
    CHECK_FALSE(r.event->output[1].count.has_value());
    CHECK(parse_event(with("/output/0/count", "0")).ok());
    CHECK(parse_event(with("/output/0/count", "9223372036854775807")).ok());
    for (const auto& json_shown : std::vector<std::pair<std::string, std::string>>{
             {"-1", "-1"},
             {"1.5", "1.5"},
             {R"("3")", R"("3")"},
             {"null", "null"},
             {"true", "true"},
             {"18446744073709551615", "18446744073709551615"},
             {"[]", "array"}}) {
      const auto& json = json_shown.first;
      const auto& shown = json_shown.second;
      CAPTURE(json);
      expect_only_error(parse_event(with("/output/0/count", json)), "/output/0/count",
                        "must be a non-negative integer, got " + shown);
    }
  }

  TEST_CASE("error and deleted are optional mapped and follow the output entry rules") {
    std::string body = with("/error", R"([{"type": "OperationOutcome",
        "url": "https://example.com/err.ndjson", "count": 2}])");
    body =
        edit(body, "/deleted", R"([{"type": "Bundle", "url": "https://example.com/del.ndjson"}])");
    const ParseResult r = parse_event(body);
    expect_clean(r);
    REQUIRE(r.event);
    REQUIRE(r.event->error.size() == 1);
    CHECK(r.event->error[0].type == "OperationOutcome");
    CHECK(r.event->error[0].url == "https://example.com/err.ndjson");
    CHECK(r.event->error[0].count == 2);
    REQUIRE(r.event->deleted.size() == 1);
    CHECK(r.event->deleted[0].type == "Bundle");
    expect_clean(parse_event(with("/error", "[]")));

    for (const std::string name : {"error", "deleted"}) {
      CAPTURE(name);
      const std::string at = "/" + name;
      expect_only_error(parse_event(with(at.c_str(), "{}")), at, "must be an array, got object");
      expect_only_error(parse_event(with(at.c_str(), "null")), at, "must be an array, got null");
      expect_only_error(parse_event(with(at.c_str(), "[1]")), at + "/0",
                        "must be an object, got number");
      const ParseResult entry = parse_event(with(at.c_str(), R"([{"url": "nope", "count": -1}])"));
      CHECK(entry.errors == std::vector<Diagnostic>{
                                {at + "/0/type", "is required"},
                                {at + "/0/url", R"(must be an absolute http(s) URL, got "nope")"},
                                {at + "/0/count", "must be a non-negative integer, got -1"}});
    }
  }

  TEST_CASE("warning: ID fields that are not UUIDs") {
    for (const char* path : {"/Meta/Source/ID", "/Meta/Destinations/0/ID", "/Meta/Logs/0/ID",
                             "/Meta/Logs/0/AttemptID"}) {
      CAPTURE(path);
      expect_only_warning(parse_event(with(path, R"("abc")")), path,
                          R"(should be a UUID, got "abc")");
      expect_only_warning(parse_event(with(path, R"("")")), path, R"(should be a UUID, got "")");
    }
    // Any version and case is a UUID.
    expect_clean(parse_event(with("/Meta/Source/ID", R"("7CE6F387-C33C-117D-8682-81E83628CBD9")")));
  }

  TEST_CASE("Log ID and AttemptID: control characters or more than 256 bytes are errors") {
    for (const char* path : {"/Meta/Logs/0/ID", "/Meta/Logs/0/AttemptID"}) {
      CAPTURE(path);
      // An escape sequence (clears a terminal), a newline, DEL and a C1 control (U+009B, CSI).
      expect_only_error(parse_event(with(path, R"("\u001b[2J")")), path,
                        "must not contain control characters, found one at byte 0");
      expect_only_error(parse_event(with(path, R"("ab\ncd")")), path,
                        "must not contain control characters, found one at byte 2");
      expect_only_error(parse_event(with(path, R"("abc\u007f")")), path,
                        "must not contain control characters, found one at byte 3");
      expect_only_error(parse_event(with(path, R"("a\u009b")")), path,
                        "must not contain control characters, found one at byte 1");
      expect_only_error(parse_event(with(path, "\"" + std::string(257, 'a') + "\"")), path,
                        "must be at most 256 bytes, got 257");
      // 256 bytes is still only a warning (not a UUID); other non-ASCII characters are fine.
      expect_only_warning(parse_event(with(path, "\"" + std::string(256, 'a') + "\"")), path,
                          "should be a UUID, got \"" + std::string(80, 'a') + "\"... (256 bytes)");
      expect_only_warning(parse_event(with(path, "\"caf\xC3\xA9\"")), path,
                          "should be a UUID, got \"caf\xC3\xA9\"");
    }
    // Source and Destinations IDs are not Log IDs: they keep the warning only.
    CHECK(parse_event(with("/Meta/Source/ID", R"("a\u001b")")).ok());
  }

  TEST_CASE("warning: EventDateTime and transactionTime not ISO 8601") {
    expect_only_warning(parse_event(with("/Meta/EventDateTime", R"("yesterday")")),
                        "/Meta/EventDateTime",
                        R"(should be an ISO 8601 date-time, got "yesterday")");
    expect_only_warning(parse_event(with("/transactionTime", R"("2024-02-30T10:00:00Z")")),
                        "/transactionTime",
                        R"(should be an ISO 8601 date-time, got "2024-02-30T10:00:00Z")");
    expect_clean(parse_event(with("/transactionTime", R"("2024-02-20")")));
    expect_clean(parse_event(with("/Meta/EventDateTime", R"("2026-05-28T17:44:52-05:00")")));
  }

  TEST_CASE("warning: an output type that is not a FHIR R4 resource type") {
    expect_only_warning(parse_event(with("/output/1/type", R"("Patients")")), "/output/1/type",
                        R"(should be a FHIR R4 resource type, got "Patients")");
    expect_only_warning(parse_event(with("/output/0/type", R"("")")), "/output/0/type",
                        R"(should be a FHIR R4 resource type, got "")");
  }

  TEST_CASE("warning: error entries should be OperationOutcome deleted entries Bundle") {
    expect_only_warning(
        parse_event(with("/error", R"([{"type": "Patient", "url": "https://example.com/e"}])")),
        "/error/0/type", R"(should be "OperationOutcome", got "Patient")");
    expect_only_warning(
        parse_event(with("/deleted", R"([{"type": "Patient", "url": "https://example.com/d"}])")),
        "/deleted/0/type", R"(should be "Bundle", got "Patient")");
  }

  TEST_CASE("warning: status 200 without transactionTime (missing or null) - not for 202") {
    const std::string message = "should be present when status is 200 (export complete)";
    expect_only_warning(parse_event(without("/transactionTime")), "/transactionTime", message);
    expect_only_warning(parse_event(with("/transactionTime", "null")), "/transactionTime", message);
    expect_only_warning(parse_event(edit(without("/transactionTime"), "/status", R"("200")")),
                        "/transactionTime", message);
    expect_clean(parse_event(edit(without("/transactionTime"), "/status", "202")));
    // A transactionTime of the wrong type is an error, not also "should be present".
    const ParseResult wrong_type = parse_event(with("/transactionTime", "5"));
    CHECK(wrong_type.errors.size() == 1);
    CHECK(wrong_type.warnings.empty());
  }

  TEST_CASE("null values never produce warnings") {
    std::string body = complete();
    for (const char* path : {"/Meta/EventDateTime", "/Meta/Source/ID", "/Meta/Destinations/0/ID",
                             "/Meta/Logs/0/ID", "/Meta/Logs/0/AttemptID"}) {
      body = edit(body, path, "null");
    }
    expect_clean(parse_event(body));
  }

  TEST_CASE("warnings and errors are reported together when both occur") {
    const ParseResult r =
        parse_event(edit(with("/Meta/Source/ID", R"("abc")"), "/status", R"("201")"));
    CHECK(r.errors == std::vector<Diagnostic>{{"/status", R"(must be 200 or 202, got "201")"}});
    CHECK(r.warnings ==
          std::vector<Diagnostic>{{"/Meta/Source/ID", R"(should be a UUID, got "abc")"}});
    CHECK_FALSE(r.event.has_value());
  }

  TEST_CASE("unknown fields anywhere are ignored") {
    std::string body = with("/extra", R"({"nested": [1, {"x": null}]})");
    body = edit(body, "/Meta/Extra", "42");
    body = edit(body, "/Meta/Source/Region", R"("us")");
    body = edit(body, "/Meta/Logs/0/Index", "0");
    body = edit(body, "/output/0/extension", R"({"sha256": "ab"})");
    body = edit(body, "/requiresAccessToken2", "\"not a bool\"");
    const ParseResult r = parse_event(body);
    expect_clean(r);
    REQUIRE(r.event);
    CHECK(r.event->output.size() == 2);
  }

  TEST_CASE("a key given twice is an error: which value counts would be ambiguous") {
    const std::string body =
        replace_once(complete(), "\"status\": 200", "\"status\": 200, \"status\": 201");
    expect_only_error(parse_event(body), "/status", "is given 2 times; a key must appear once");
    const std::string url = replace_once(complete(), "\"type\": \"Patient\",",
                                         "\"type\": \"Patient\", \"url\": \"https://a.example/\",");
    expect_only_error(parse_event(url), "/output/0/url",
                      "is given 2 times; a key must appear once");
    const std::string tt =
        replace_once(complete(), "\"progress\": null,", "\"transactionTime\": null,");
    const ParseResult dup_tt = parse_event(tt);
    CHECK(dup_tt.errors == std::vector<Diagnostic>{
                               {"/transactionTime", "is given 2 times; a key must appear once"}});
    CHECK(dup_tt.warnings.empty());
  }

  TEST_CASE("messages quote values as JSON and cut long ones") {
    expect_only_error(parse_event(with("/Meta/DataModel", R"("a\"b\\c\nd")")), "/Meta/DataModel",
                      R"(must be "FHIR Bulk Data Access", got "a\"b\\c\nd")");
    const std::string long_url = "\"" + std::string(5000, 'x') + "\"";
    const ParseResult r = parse_event(with("/output/0/url", long_url));
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].message ==
          "must be an absolute http(s) URL, got \"" + std::string(80, 'x') + "\"... (5000 bytes)");
    // A cut never splits a UTF-8 sequence: 79 ASCII bytes then a 2-byte character.
    const std::string utf8 = "\"" + std::string(79, 'x') + "\xC3\xA9" + "\"";
    const ParseResult u = parse_event(with("/output/0/url", utf8));
    REQUIRE(u.errors.size() == 1);
    CHECK(u.errors[0].message ==
          "must be an absolute http(s) URL, got \"" + std::string(79, 'x') + "\"... (81 bytes)");
  }

  TEST_CASE("the number of diagnostics is bounded with a count of the rest") {
    std::string entries = "[";
    for (int i = 0; i < 2000; ++i)
      entries += i == 0 ? "{}" : ",{}";
    entries += "]";
    const ParseResult r = parse_event(with("/output", entries));
    REQUIRE(r.errors.size() == 1001);
    CHECK(r.errors[0] == Diagnostic{"/output/0/type", "is required"});
    CHECK(r.errors[999] == Diagnostic{"/output/499/url", "is required"});
    CHECK(r.errors[1000] == Diagnostic{"", "and 3000 more errors not listed"});
  }

  TEST_CASE("deeply nested and huge-number bodies do not crash") {
    const std::size_t depth = 200000;
    const std::string open(depth, '['), close(depth, ']');
    expect_only_error(parse_event(open + close), "", "must be an object, got array");
    CHECK(parse_event(open).errors.size() == 1);  // unterminated: not JSON
    // Deep nesting inside an unknown field of an otherwise valid event is fine.
    const std::string nested = replace_once(complete(), "\"progress\": null,",
                                            "\"deep\": " + open + close + ", \"progress\": null,");
    expect_clean(parse_event(nested));
    // Deep nesting where a typed field is expected: one type error, no walk into it.
    const std::string deep_status =
        replace_once(complete(), "\"status\": 200", "\"status\": " + open + close);
    expect_only_error(parse_event(deep_status), "/status", "must be 200 or 202, got array");

    const ParseResult too_big =
        parse_event(replace_once(complete(), "\"status\": 200", "\"status\": 1e400"));
    REQUIRE(too_big.errors.size() == 1);
    CHECK(too_big.errors[0].path.empty());
    CHECK(too_big.errors[0].message.find("Number too big") != std::string::npos);
    const ParseResult beyond_int64 = parse_event(
        replace_once(complete(), "\"status\": 200", "\"status\": 200000000000000000000000"));
    REQUIRE(beyond_int64.errors.size() == 1);
    CHECK(beyond_int64.errors[0].path == "/status");
    CHECK(beyond_int64.errors[0].message.rfind("must be 200 or 202, got 1.9999", 0) == 0);
    expect_only_error(parse_event(with("/output/0/count", "1e300")), "/output/0/count",
                      "must be a non-negative integer, got 1e300");
    const std::string digits(100000, '9');
    CHECK_NOTHROW(
        parse_event(replace_once(complete(), "\"status\": 200", "\"status\": " + digits)));
  }

  TEST_CASE("parse_event never throws whatever the bytes") {
    for (const std::string_view body :
         {std::string_view(""), std::string_view("\xFF\xFE"), std::string_view("{\"Meta\":"),
          std::string_view("{\"\\ud800\":1}"), std::string_view("\"\\u0000\""),
          std::string_view("{\"Meta\":{\"Logs\":[null,1,[],{}]}}"),
          std::string_view("{\"output\":[null,{\"type\":[],\"url\":{}}]}")}) {
      CHECK_NOTHROW(parse_event(body));
    }
  }

  TEST_CASE("event key: Logs(0).ID when present and non-empty else sha256 of the body") {
    CHECK(parse_event(complete()).event->key == "d9f5d293-7110-461e-a875-3beb089e79f3");
    for (const std::string& body :
         {without("/Meta/Logs"), with("/Meta/Logs", "[]"), with("/Meta/Logs/0/ID", "null"),
          with("/Meta/Logs/0/ID", R"("")"), with("/Meta/Logs/0", "{}")}) {
      CAPTURE(body);
      const ParseResult r = parse_event(body);
      REQUIRE(r.ok());
      REQUIRE(r.event);
      CHECK(r.event->key == "sha256:" + fbr::core::sha256_hex(body));
      CHECK(r.event->key.size() == 7 + 64);
      CHECK(r.event->log_id().empty());
    }
    // Only the first log counts.
    const ParseResult second = parse_event(
        with("/Meta/Logs", R"([{"ID": null}, {"ID": "d9f5d293-7110-461e-a875-3beb089e79f3"}])"));
    REQUIRE(second.event);
    CHECK(second.event->key.rfind("sha256:", 0) == 0);
  }

  TEST_CASE("event_key and the log accessors on a hand-made event") {
    fbr::core::Event e;
    CHECK(e.log_id().empty());
    CHECK(e.attempt_id().empty());
    CHECK(fbr::core::event_key(e, "abc") ==
          "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    e.meta.logs.push_back({"log-1", "attempt-1"});
    CHECK(e.log_id() == "log-1");
    CHECK(e.attempt_id() == "attempt-1");
    CHECK(fbr::core::event_key(e, "abc") == "log-1");
  }
}

TEST_SUITE("core/challenge") {
  TEST_CASE("the verification-challenge fixture is a challenge") {
    const auto c = parse_challenge(fixture("verification-challenge.json"));
    REQUIRE(c);
    CHECK(c->token == "change-me");
    CHECK(c->challenge == "2e73f864-a0e9-4764-a7d5-91fe5836db22");
  }

  TEST_CASE("the token is optional (it may come only as a header)") {
    const auto c = parse_challenge(R"({"challenge": "C"})");
    REQUIRE(c);
    CHECK_FALSE(c->token.has_value());
    CHECK(c->challenge == "C");
  }

  TEST_CASE("anything else is not a challenge") {
    for (const std::string& body :
         {std::string(R"({"verification-token": "T"})"), std::string(R"({"challenge": 5})"),
          std::string(R"({"challenge": null})"),
          std::string(R"({"challenge": "C", "verification-token": 5})"),
          std::string(R"({"challenge": "C", "Meta": {}})"), std::string(R"(["challenge", "C"])"),
          std::string("{"), std::string(""), std::string("\"C\""), complete()}) {
      CAPTURE(body);
      CHECK_FALSE(parse_challenge(body).has_value());
    }
  }
}
