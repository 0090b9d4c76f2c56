// An event's page for a download handler: each file with its bytes, resources, sha256 and
// verified, from the handler's records; a file that failed shows the delivery's error.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/admin_support.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"

namespace fbr::itest::admin {
namespace {

/// The event's delivery to `handler` once it is in `state` (through the API), or a null value.
rapidjson::Document delivery_when(const Console& console, const std::string& log_id,
                                  const std::string& handler, const std::string& state) {
  rapidjson::Document found;
  dispatch::poll_until(
      [&] {
        const auto response = console.get("/api/events/" + log_id);
        if (response.status != 200) return false;
        auto doc = parse_json(response.body);
        for (auto& d : doc["deliveries"].GetArray()) {
          if (d["handler"].GetString() == handler && d["state"].GetString() == state) {
            found.CopyFrom(d, found.GetAllocator());
            return true;
          }
        }
        return false;
      },
      30s, 100ms);
  return found;
}

TEST_CASE("admin download: an event's page shows each downloaded file verified") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    download::FileServer files;
    const std::string text = download::generated_ndjson("Patient", 25, 120);
    files.put("/a/Patient.ndjson", download::Resource(text));
    TempDir out;
    ConsoleOptions options;
    options.handlers =
        R"("handlers": [)" + download::download_handler("download", out.path() / "dl") + "]";
    Console console(backend, options);
    if (skip_without_console(console)) return;
    const std::string id = new_log_id();
    const std::string missing = new_log_id();
    console.post_event_ok(
        download::export_event(id, {{"Patient", files.url("/a/Patient.ndjson")}}, false));
    console.post_event_ok(
        download::export_event(missing, {{"Patient", files.url("/gone/Patient.ndjson")}}, false));

    const auto done = delivery_when(console, id, "download", "done");
    REQUIRE_MESSAGE(done.IsObject(), console.server().log_tail());
    CHECK(json_str(done, "/type") == "download");
    REQUIRE(done["files"].IsArray());
    REQUIRE(done["files"].Size() == 1);
    const auto& file = done["files"][0];
    CHECK(json_str(file, "/url") == files.url("/a/Patient.ndjson"));
    CHECK(json_raw(file, "/verified") == "true");
    CHECK(json_raw(file, "/resources") == "25");
    CHECK(json_raw(file, "/bytes") == std::to_string(text.size()));
    CHECK(json_str(file, "/sha256").size() == 64);
    CHECK_FALSE(json_str(file, "/file").empty());

    // The hostile twin: a file the server does not have. The delivery is dead with the error;
    // nothing on the page claims a verified file.
    const auto dead = delivery_when(console, missing, "download", "dead");
    REQUIRE_MESSAGE(dead.IsObject(), console.server().log_tail());
    CHECK(json_str(dead, "/last_error").find("404") != std::string::npos);
    for (const auto& f : dead["files"].GetArray())
      CHECK(json_raw(f, "/verified") == "false");
  }
}

}  // namespace
}  // namespace fbr::itest::admin
