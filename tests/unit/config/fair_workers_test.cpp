// Config of the fair-workers rules (issue 12): every handler's `concurrency` and its default, the
// download handler's speed rule and max_files.
#include <variant>

#include "tests/unit/config/support.hpp"

using namespace fbr::config;
using namespace fbr::config::test;

namespace {

const char* kFile = R"({"name": "f", "type": "file", "dir": "/srv/f"})";
const char* kDownload = R"({"name": "d", "type": "download", "dir": "/srv/d"})";

std::string config_with(const std::string& handlers, const std::string& more = {}) {
  return R"({"handlers": [)" + handlers + "]" + (more.empty() ? "" : ", " + more) + "}";
}

DownloadHandler download(const std::string& extra) {
  const Config c =
      parse_ok(config_with(R"({"name": "d", "type": "download", "dir": "x", )" + extra + "}"));
  return std::get<DownloadHandler>(c.handlers.at(0).settings);
}

std::string download_error(const std::string& extra) {
  return error_of(config_with(R"({"name": "d", "type": "download", "dir": "x", )" + extra + "}"));
}

}  // namespace

TEST_CASE("config fair workers: a handler alone may use every worker") {
  CHECK(parse_ok(config_with(kDownload)).handlers.at(0).concurrency == 8);
  CHECK(parse_ok(config_with(kDownload, R"("dispatch": {"concurrency": 3})"))
            .handlers.at(0)
            .concurrency == 3);
}

TEST_CASE("config fair workers: beside other handlers the default leaves one worker free") {
  const Config c = parse_ok(config_with(std::string(kFile) + ", " + kDownload));
  CHECK(c.handlers.at(0).concurrency == 7);
  CHECK(c.handlers.at(1).concurrency == 7);
  // One worker in all: nothing to leave (at least 1).
  const Config one = parse_ok(
      config_with(std::string(kFile) + ", " + kDownload, R"("dispatch": {"concurrency": 1})"));
  CHECK(one.handlers.at(0).concurrency == 1);
  // Order does not matter: dispatch may come after handlers in the file.
  const Config later = parse_ok(R"({"handlers": [)" + std::string(kFile) + ", " + kDownload +
                                R"(], "dispatch": {"concurrency": 16}})");
  CHECK(later.handlers.at(1).concurrency == 15);
}

TEST_CASE("config fair workers: concurrency is a key of every handler type") {
  for (const char* handler :
       {R"({"name": "h", "type": "file", "dir": "/srv/f", "concurrency": 2})",
        R"({"name": "h", "type": "exec", "command": ["true"], "concurrency": 2})",
        R"({"name": "h", "type": "http", "url": "http://x/", "concurrency": 2})",
        R"({"name": "h", "type": "download", "dir": "x", "concurrency": 2})",
        R"({"name": "h", "type": "nats", "servers": ["nats://x:4222"], "subject": "s", )"
        R"("concurrency": 2})"}) {
    CAPTURE(handler);
    CHECK(parse_ok(config_with(handler)).handlers.at(0).concurrency == 2);
  }
}

TEST_CASE("config fair workers: a bad concurrency names the key and the limit") {
  CHECK(
      error_of(config_with(R"({"name": "d", "type": "download", "dir": "x", "concurrency": 0})")) ==
      "handlers[0].concurrency: must be an integer from 1 to 1024, got 0");
  CHECK(error_of(
            config_with(R"({"name": "d", "type": "download", "dir": "x", "concurrency": "4"})")) ==
        R"(handlers[0].concurrency: must be an integer from 1 to 1024, got "4")");
  CHECK(error_of(
            config_with(std::string(kFile) +
                        R"(, {"name": "d", "type": "download", "dir": "x", "concurrency": 9})")) ==
        "handlers[1].concurrency: 9 is more than dispatch.concurrency (8): a handler cannot run "
        "more deliveries than there are workers");
  // Equal to the pool is allowed (the operator chose it).
  CHECK(
      parse_ok(config_with(std::string(kFile) +
                           R"(, {"name": "d", "type": "download", "dir": "x", "concurrency": 8})"))
          .handlers.at(1)
          .concurrency == 8);
}

TEST_CASE("config fair workers: download speed rule and max_files, defaults and bounds") {
  const DownloadHandler defaults = download(R"("parallel": 4)");
  CHECK(defaults.min_speed_bytes_per_s == 1024);
  CHECK(defaults.min_speed_window_s == 60);
  CHECK(defaults.max_files == 10000);
  const DownloadHandler tuned =
      download(R"("min_speed_bytes_per_s": 1, "min_speed_window_s": 2, "max_files": 1)");
  CHECK(tuned.min_speed_bytes_per_s == 1);
  CHECK(tuned.min_speed_window_s == 2);
  CHECK(tuned.max_files == 1);
  CHECK(download(R"("min_speed_window_s": 86400, "max_files": 1000000)").max_files == 1000000);

  CHECK(download_error(R"("min_speed_bytes_per_s": 0)") ==
        "handlers[0].min_speed_bytes_per_s: must be a positive integer, got 0");
  CHECK(download_error(R"("min_speed_window_s": 0)") ==
        "handlers[0].min_speed_window_s: must be an integer from 1 to 86400, got 0");
  CHECK(download_error(R"("min_speed_window_s": 86401)") ==
        "handlers[0].min_speed_window_s: must be an integer from 1 to 86400, got 86401");
  CHECK(download_error(R"("max_files": 0)") ==
        "handlers[0].max_files: must be an integer from 1 to 1000000, got 0");
  CHECK(download_error(R"("max_files": 1000001)") ==
        "handlers[0].max_files: must be an integer from 1 to 1000000, got 1000001");
  // Download keys only.
  CHECK(error_of(config_with(R"({"name": "h", "type": "file", "dir": "/f", "max_files": 5})")) ==
        "handlers[0].max_files: unknown key");
}

TEST_CASE("config fair workers: the effective values are in the redacted output") {
  const std::string json =
      to_redacted_json(parse_ok(config_with(std::string(kFile) + ", " + kDownload)));
  CHECK(contains(json, R"("concurrency": 7)"));
  CHECK(contains(json, R"("min_speed_bytes_per_s": 1024)"));
  CHECK(contains(json, R"("min_speed_window_s": 60)"));
  CHECK(contains(json, R"("max_files": 10000)"));
}
