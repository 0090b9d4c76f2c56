// The download handler's egress policy and limits: defaults, values, bad values, printed config.
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

TEST_CASE("config download: egress and limit defaults are the safe ones") {
  const DownloadHandler d = download("");
  CHECK(d.egress.allowed_hosts.empty());
  CHECK_FALSE(d.egress.allow_private_addresses);
  CHECK_FALSE(d.egress.token_hosts.has_value());
  CHECK(d.max_file_bytes == 16ULL << 30);
  CHECK(d.max_event_bytes == 256ULL << 30);
  CHECK(d.max_decompression_ratio == 100);
  CHECK_FALSE(d.min_free_bytes.has_value());
}

TEST_CASE("config download: egress and limit values are read") {
  const DownloadHandler d = download(
      R"("allowed_hosts": ["files.example", "*.s3.example", "127.0.0.1", "[::1]", "fd00::5"],
         "allow_private_addresses": true, "token_hosts": ["ehr.example", "*.api.example"],
         "max_file_bytes": 1000, "max_event_bytes": 5000, "max_decompression_ratio": 7,
         "min_free_bytes": 0)");
  CHECK(d.egress.allowed_hosts ==
        std::vector<std::string>{"files.example", "*.s3.example", "127.0.0.1", "[::1]", "fd00::5"});
  CHECK(d.egress.allow_private_addresses);
  REQUIRE(d.egress.token_hosts.has_value());
  CHECK(*d.egress.token_hosts == std::vector<std::string>{"ehr.example", "*.api.example"});
  CHECK(d.max_file_bytes == 1000);
  CHECK(d.max_event_bytes == 5000);
  CHECK(d.max_decompression_ratio == 7);
  CHECK(d.min_free_bytes == 0);
  // token_hosts: [] sends the token nowhere; null is the default (the request's host).
  CHECK(download(R"("token_hosts": [])").egress.token_hosts == std::vector<std::string>{});
  CHECK_FALSE(
      download(R"("token_hosts": null, "min_free_bytes": null)").egress.token_hosts.has_value());
}

TEST_CASE("config download: bad egress and limit values name the key") {
  CHECK(bad(R"("allowed_hosts": "files.example")") ==
        R"(handlers[0].allowed_hosts: must be an array of non-empty strings, got "files.example")");
  CHECK(
      bad(R"("allowed_hosts": ["ok.example", "http://files.example/"])") ==
      R"(handlers[0].allowed_hosts[1]: must be a host name, "*." and a name, or an IP address, got "http://files.example/")");
  CHECK(
      bad(R"("allowed_hosts": ["*"])") ==
      R"(handlers[0].allowed_hosts[0]: must be a host name, "*." and a name, or an IP address, got "*")");
  CHECK(
      bad(R"("token_hosts": ["a..b"])") ==
      R"(handlers[0].token_hosts[0]: must be a host name, "*." and a name, or an IP address, got "a..b")");
  CHECK(
      bad(R"("allowed_hosts": ["fe80::zz"])") ==
      R"(handlers[0].allowed_hosts[0]: must be a host name, "*." and a name, or an IP address, got "fe80::zz")");
  CHECK(bad(R"("allow_private_addresses": "yes")") ==
        R"(handlers[0].allow_private_addresses: must be true or false, got "yes")");
  CHECK(bad(R"("allow_private_addresses": null)") ==
        "handlers[0].allow_private_addresses: must be true or false, got null");
  CHECK(bad(R"("max_file_bytes": 0)") ==
        "handlers[0].max_file_bytes: must be a positive integer, got 0");
  CHECK(bad(R"("max_event_bytes": -5)") ==
        "handlers[0].max_event_bytes: must be a positive integer, got -5");
  CHECK(bad(R"("max_decompression_ratio": 0)") ==
        "handlers[0].max_decompression_ratio: must be an integer from 1 to 1000000, got 0");
  CHECK(bad(R"("max_decompression_ratio": 1000001)") ==
        "handlers[0].max_decompression_ratio: must be an integer from 1 to 1000000, got 1000001");
  CHECK(
      bad(R"("min_free_bytes": "1G")") ==
      R"(handlers[0].min_free_bytes: must be an integer from 0 to 9223372036854775807, got "1G")");
  // Download keys only.
  CHECK(error_of(with_handler(
            R"({"name": "h", "type": "http", "url": "http://x/", "allowed_hosts": []})")) ==
        "handlers[0].allowed_hosts: unknown key");
}

TEST_CASE("config download: egress and limits are printed and round-trip") {
  const Config c = parse_ok(with_handler(
      R"({"name": "d", "type": "download", "dir": "x", "allowed_hosts": ["*.s3.example"],
          "token_hosts": ["ehr.example"], "min_free_bytes": 1024})"));
  const std::string json = to_redacted_json(c);
  CAPTURE(json);
  CHECK(contains(json, R"("allowed_hosts": [
        "*.s3.example"
      ],
      "allow_private_addresses": false,
      "token_hosts": [
        "ehr.example"
      ],
      "max_file_bytes": 17179869184,
      "max_event_bytes": 274877906944,
      "max_decompression_ratio": 100,
      "min_free_bytes": 1024)"));
  const LoadResult again = parse_config(json, {}, "again.json");
  INFO(test::joined(again.errors));
  REQUIRE(again.ok());
  CHECK(to_redacted_json(*again.config) == json);
  const std::string defaults =
      to_redacted_json(parse_ok(with_handler(R"({"name": "d", "type": "download", "dir": "x"})")));
  CHECK(contains(defaults, R"("allowed_hosts": [],)"));
  CHECK(contains(defaults, R"("token_hosts": null,)"));
  CHECK(contains(defaults, R"("min_free_bytes": null)"));
}

}  // namespace
}  // namespace fbr::config
