// The admin listener's settings (admin.*): off by default, tokens required off loopback, its own
// TLS pair, the FBR_ADMIN_* overrides, tokens never shown.
#include <doctest/doctest.h>

#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::contains;
using test::error_of;
using test::joined;
using test::parse_ok;

TEST_CASE("config admin: off by default, an empty or null listen is off too") {
  CHECK_FALSE(parse_ok("{}").admin.enabled());
  CHECK_FALSE(parse_ok(R"({"admin": {"listen": ""}})").admin.enabled());
  CHECK_FALSE(parse_ok(R"({"admin": {"listen": null}})").admin.enabled());
  const Config c = parse_ok(R"({"admin": {"listen": "127.0.0.1:0"}})");
  REQUIRE(c.admin.enabled());
  CHECK(c.admin.listen->port == 0);
  CHECK(c.admin.loopback());
  CHECK(c.admin.session_ttl_s == 43200);
}

TEST_CASE("config admin: a loopback listen may go without tokens, any other address may not") {
  for (const auto* listen : {"127.0.0.1:8081", "[::1]:8081", "localhost:8081", "127.1.2.3:9"}) {
    INFO(listen);
    CHECK(parse_ok(std::string(R"({"admin": {"listen": ")") + listen + R"("}})")
              .admin.tokens.empty());
  }
  for (const auto* listen : {"0.0.0.0:8081", "[::]:8081", "10.0.0.5:8081", "128.0.0.1:1"}) {
    INFO(listen);
    const std::string error =
        error_of(std::string(R"({"admin": {"listen": ")") + listen + R"("}})");
    CHECK(contains(error,
                   "admin.tokens: at least one token is required when admin.listen is not "
                   "a loopback address"));
  }
  const Config c =
      parse_ok(R"({"admin": {"listen": "0.0.0.0:8081", "tokens": ["an-admin-token-0123"]}})");
  CHECK(c.admin.tokens.size() == 1);
  CHECK_FALSE(c.admin.loopback());
}

TEST_CASE("config admin: FBR_ADMIN_LISTEN and FBR_ADMIN_TOKENS override the file") {
  Environment env = test::kTokenEnv;
  env["FBR_ADMIN_LISTEN"] = "0.0.0.0:9090";
  CHECK(contains(error_of("{}", env), "admin.tokens"));
  env["FBR_ADMIN_TOKENS"] = "first-admin-token-1,second-admin-token-2";
  const Config c = parse_ok("{}", env);
  REQUIRE(c.admin.enabled());
  CHECK(c.admin.listen->port == 9090);
  CHECK(c.admin.tokens.size() == 2);
  env["FBR_ADMIN_LISTEN"] = "not an address";
  CHECK(contains(error_of("{}", env), "FBR_ADMIN_LISTEN"));
}

TEST_CASE("config admin: its tls pair is set together, tokens are redacted in check-config") {
  CHECK(contains(error_of(R"({"admin": {"listen": "127.0.0.1:1", "tls": {"cert_file": "/c"}}})"),
                 "admin.tls: cert_file and key_file must be set together"));
  const std::string json = to_redacted_json(
      parse_ok(R"({"admin": {"listen": "127.0.0.1:1", "tokens": ["secret-admin-token-77"]}})"));
  INFO(json);
  CHECK_FALSE(contains(json, "secret-admin-token-77"));
  CHECK(contains(json, "<redacted>"));
  CHECK(contains(json, R"("listen": "127.0.0.1:1")"));
}

}  // namespace
}  // namespace fbr::config
