// The download handler's `attachments` group: its defaults (off), values and bad values.
#include <doctest/doctest.h>

#include <variant>

#include "config/config.hpp"
#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::contains;
using test::error_of;
using test::parse_ok;
using test::with_handler;

DownloadHandler download(std::string_view extra) {
  const Config c =
      parse_ok(with_handler(R"({"name": "d", "type": "download", "dir": "x")" +
                            std::string(extra.empty() ? "" : ", ") + std::string(extra) + "}"));
  REQUIRE(c.handlers.size() == 1);
  return std::get<DownloadHandler>(c.handlers.front().settings);
}

std::string bad(std::string_view extra) {
  return error_of(
      with_handler(R"({"name": "d", "type": "download", "dir": "x", )" + std::string(extra) + "}"));
}

}  // namespace

TEST_CASE("config download attachments: off by default, every type, 1 GiB each") {
  const DownloadHandler d = download("");
  CHECK(d.attachments.mode == "off");
  CHECK(d.attachments.types.empty());
  CHECK(d.attachments.max_bytes == 1ULL << 30);
  CHECK(d.attachments.max_count == 10000);
}

TEST_CASE("config download attachments: mode, types and max_bytes are read") {
  const DownloadHandler d = download(
      R"("attachments": {"mode": "download", "types": ["application/pdf", "image/*"],
                         "max_bytes": 5000, "max_count": 7})");
  CHECK(d.attachments.mode == "download");
  CHECK(d.attachments.types == std::vector<std::string>{"application/pdf", "image/*"});
  CHECK(d.attachments.max_bytes == 5000);
  CHECK(d.attachments.max_count == 7);
  CHECK(download(R"("attachments": {"types": null})").attachments.types.empty());
}

TEST_CASE("config download attachments: a string is the mode alone") {
  CHECK(download(R"("attachments": "download")").attachments.mode == "download");
  CHECK(download(R"("attachments": "off")").attachments.mode == "off");
  CHECK(download(R"("attachments": "download")").attachments.max_bytes == 1ULL << 30);
  CHECK(contains(bad(R"("attachments": "yes")"), "attachments"));
  CHECK(contains(bad(R"("attachments": 1)"), "attachments"));
}

TEST_CASE("config download attachments: a bad mode, type or max_bytes is refused by its key") {
  CHECK(contains(bad(R"("attachments": {"mode": "yes"})"), "attachments.mode"));
  CHECK(contains(bad(R"("attachments": {"max_bytes": 0})"), "attachments.max_bytes"));
  CHECK(contains(bad(R"("attachments": {"max_count": 0})"), "attachments.max_count"));
  const std::string type = bad(R"("attachments": {"types": ["application/pdf", "pdf"]})");
  CHECK(contains(type, "attachments.types[1]"));
  CHECK(contains(type, "must be a MIME type"));
  CHECK(contains(bad(R"("attachments": {"types": ["text/plain; charset=utf-8"]})"),
                 "attachments.types[0]"));
  CHECK(contains(bad(R"("attachments": {"types": []})"), "attachments.types"));
  CHECK(contains(bad(R"("attachments": {"other": 1})"), "attachments.other"));
}

}  // namespace fbr::config
