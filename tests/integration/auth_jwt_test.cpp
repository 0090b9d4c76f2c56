// Inbound JWT bearer tokens (README "Authentication"): a token signed by the identity provider's
// key passes, each way of breaking one is refused with the same 401 and its own reason= in the
// log; the JWKS URL is fetched again once for an unknown kid (a rotation passes on its first
// request, a made-up kid costs one fetch a minute), a JWKS URL that goes down keeps its last keys,
// and jwks_file works the same way. The identity provider is a key generated here and a JWKS
// served by the test's own HTTP server on loopback.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/auth_support.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using namespace fbr::itest::auth;
using download::FileServer;
using download::Resource;

namespace {

constexpr const char* kIssuer = "https://idp.example.test";
constexpr const char* kAudience = "fbr-webhook";

/// The server's config: jwt with a short leeway (5 s) and `source` ("jwks_url": ... or
/// "jwks_file": ...), plus `more` members of jwt.
ServerConfig jwt_config(const std::string& source, const std::string& more = {},
                        bool with_tokens = false) {
  ServerConfig config;
  if (!with_tokens) config.tokens.reset();
  config.extra_members = R"("jwt": {)" + source + R"(, "issuer": ")" + kIssuer +
                         R"(", "audience": ")" + kAudience + R"(", "leeway_s": 5)" +
                         (more.empty() ? "" : ", " + more) + "}";
  return config;
}

std::string url_source(const FileServer& idp) {
  return R"("jwks_url": ")" + idp.url("/jwks.json") + "\"";
}

/// POSTs a new event with `token`; the answer's status.
int post_status(const Server& server, const std::string& token) {
  return http(server.port(), post_with_bearer(event_with_log_id(new_log_id()), token)).status;
}

}  // namespace

TEST_CASE(
    "jwt: a valid token passes - expired, early, wrong aud or iss, alg none, HS256, tampered are "
    "401 with their reason") {
  const jose::Key key = jose::Key::generate(jose::Alg::kES256);
  FileServer idp;
  idp.put("/jwks.json", Resource(jwks_of({{key, "idp-1", key.default_alg()}})));
  TempDir dir;
  Server server(dir, jwt_config(url_source(idp)));
  INFO("server log tail:\n", server.log_tail());

  const std::string valid = signed_jwt(key, "idp-1", jose::Alg::kES256);
  const auto accepted = http(server.port(), post_with_bearer(event_with_log_id(kSeedLogId), valid));
  CHECK(accepted.status == 200);
  CHECK(journal_count(server, "events", "log_id = ?", {kSeedLogId}) == 1);
  // Reused (the verified-token cache): still 200.
  CHECK(post_status(server, valid) == 200);

  std::vector<std::string> tokens{valid};
  const auto refused = [&](const std::string& token, const std::string& reason) {
    tokens.push_back(token);
    const auto r = http(server.port(), post_with_bearer(event_with_log_id(new_log_id()), token));
    CHECK_MESSAGE(r.status == 401, reason);
    // The same body as a wrong shared token's 401: nothing says which part failed.
    CHECK(r.body == R"({"error":"unauthorized"})");
    expect_refused_for(server, reason);
  };
  TestClaims expired;
  expired.exp = now_s() - 60;
  expired.iat = now_s() - 120;
  refused(signed_jwt(key, "idp-1", jose::Alg::kES256, expired), "expired");
  TestClaims early;
  early.nbf = now_s() + 600;
  refused(signed_jwt(key, "idp-1", jose::Alg::kES256, early), "not_yet_valid");
  TestClaims other_aud;
  other_aud.aud = "someone-else";
  refused(signed_jwt(key, "idp-1", jose::Alg::kES256, other_aud), "audience");
  TestClaims other_iss;
  other_iss.iss = "https://evil.example.test";
  refused(signed_jwt(key, "idp-1", jose::Alg::kES256, other_iss), "issuer");
  const std::string payload = claims_json({});
  refused(raw_jwt(R"({"alg":"none","kid":"idp-1"})", payload, ""), "alg");
  // The public key as an HMAC secret (the classic algorithm confusion).
  const std::string public_jwk = key.public_jwk("idp-1", jose::Alg::kES256);
  refused(hs256_jwt(public_jwk, R"({"alg":"HS256","kid":"idp-1","typ":"JWT"})", payload), "alg");
  // A valid signature over other claims: the payload swapped for one with another subject.
  {
    const auto dot1 = valid.find('.');
    const auto dot2 = valid.rfind('.');
    TestClaims admin;
    admin.sub = "admin";
    const std::string tampered =
        valid.substr(0, dot1 + 1) + jose::base64url_encode(claims_json(admin)) + valid.substr(dot2);
    refused(tampered, "signature");
  }
  refused("not.a-jwt.at-all!", "malformed");
  // No JWT-looking token and no shared tokens configured: "wrong token", as before.
  CHECK(post_status(server, "just-some-string") == 401);
  CHECK(server.wait_for_line({"unauthorized", "reason=\"wrong token\""}).has_value());
  // The header-time refusal comes before the body: a large announced body is not read.
  {
    auto big = post_with_bearer(event_with_padding(new_log_id(), 200'000), tokens[1]);
    CHECK(http(server.port(), big).status == 401);
  }
  CHECK(journal_count(server, "events") == 2);
  check_log_free_of(server, tokens);
}

TEST_CASE(
    "jwt: an unknown kid makes one refetch, then 401 reason=kid - a second one within a minute "
    "makes none") {
  const jose::Key key = jose::Key::generate(jose::Alg::kES256);
  const jose::Key stranger = jose::Key::generate(jose::Alg::kES256);
  FileServer idp;
  idp.put("/jwks.json", Resource(jwks_of({{key, "idp-1", key.default_alg()}})));
  TempDir dir;
  Server server(dir, jwt_config(url_source(idp)));
  INFO("server log tail:\n", server.log_tail());
  REQUIRE(dispatch::poll_until([&] { return idp.count("/jwks.json") >= 1; }, 5s));
  CHECK(post_status(server, signed_jwt(key, "idp-1", jose::Alg::kES256)) == 200);
  const std::size_t before = idp.count("/jwks.json");

  const std::string unknown = signed_jwt(stranger, "nobody-knows", jose::Alg::kES256);
  CHECK(post_status(server, unknown) == 401);
  expect_refused_for(server, "kid");
  CHECK(idp.count("/jwks.json") == before + 1);

  // Rate-limited: another unknown kid at once is refused without a fetch.
  const auto started = std::chrono::steady_clock::now();
  const std::string again = signed_jwt(stranger, "nobody-either", jose::Alg::kES256);
  CHECK(post_status(server, again) == 401);
  CHECK(ms_since(started) < 1000);
  CHECK(idp.count("/jwks.json") == before + 1);
  check_log_free_of(server, {unknown, again});
}

TEST_CASE("jwt: a key the identity provider has just published passes on its first request") {
  const jose::Key old_key = jose::Key::generate(jose::Alg::kES256);
  const jose::Key new_key = jose::Key::generate(jose::Alg::kRS256);
  FileServer idp;
  idp.put("/jwks.json", Resource(jwks_of({{old_key, "2025", jose::Alg::kES256}})));
  TempDir dir;
  Server server(dir, jwt_config(url_source(idp)));
  INFO("server log tail:\n", server.log_tail());
  REQUIRE(dispatch::poll_until([&] { return idp.count("/jwks.json") >= 1; }, 5s));
  CHECK(post_status(server, signed_jwt(old_key, "2025", jose::Alg::kES256)) == 200);

  idp.put("/jwks.json", Resource(jwks_of({{old_key, "2025", jose::Alg::kES256},
                                          {new_key, "2026", jose::Alg::kRS256}})));
  const std::string rotated = signed_jwt(new_key, "2026", jose::Alg::kRS256);
  CHECK(post_status(server, rotated) == 200);
  CHECK(post_status(server, signed_jwt(old_key, "2025", jose::Alg::kES256)) == 200);
  CHECK(journal_count(server, "events") == 3);
  // The JWKS thread ends with the service: a clean exit, at once.
  const auto stopping = std::chrono::steady_clock::now();
  CHECK(server.terminate() == 0);
  CHECK(ms_since(stopping) < 3000);
  check_log_free_of(server, {rotated});
}

TEST_CASE("jwt: a JWKS URL that goes down keeps the last keys - a warning names the URL") {
  const jose::Key key = jose::Key::generate(jose::Alg::kES384);
  FileServer idp;
  idp.put("/jwks.json", Resource(jwks_of({{key, "idp-1", key.default_alg()}})));
  TempDir dir;
  Server server(dir, jwt_config(url_source(idp), R"("jwks_refresh_s": 1)"));
  INFO("server log tail:\n", server.log_tail());
  CHECK(post_status(server, signed_jwt(key, "idp-1", jose::Alg::kES384)) == 200);

  // Garbage first: the last good set stays.
  idp.put("/jwks.json", Resource("<html>maintenance</html>"));
  CHECK(server.wait_for_line({"jwks_fetch_failed", "not a JWKS"}, 10s).has_value());
  CHECK(post_status(server, signed_jwt(key, "idp-1", jose::Alg::kES384)) == 200);
  // A JWKS without a usable key, and one over 1 MiB: kept out the same way.
  idp.put("/jwks.json", Resource(R"({"keys": []})"));
  CHECK(server.wait_for_line({"jwks_fetch_failed", "no key to verify"}, 10s).has_value());
  idp.put("/jwks.json",
          Resource(R"({"keys": [], "padding": ")" + std::string(1 << 20, 'x') + R"("})"));
  CHECK(server.wait_for_line({"jwks_fetch_failed", "1048576 bytes"}, 10s).has_value());
  CHECK(post_status(server, signed_jwt(key, "idp-1", jose::Alg::kES384)) == 200);

  const std::string where = idp.url("/jwks.json");
  idp.stop();
  const std::size_t host_at = where.find("127.0.0.1");
  REQUIRE(host_at != std::string::npos);
  CHECK(server.wait_for_line({"jwks_fetch_failed", where.substr(host_at)}, 10s).has_value());
  // A new token (not one the cache knows) still verifies against the kept keys.
  CHECK(post_status(server, signed_jwt(key, "idp-1", jose::Alg::kES384)) == 200);
  CHECK(journal_count(server, "events") == 4);
  CHECK(server.terminate() == 0);
}

TEST_CASE(
    "jwt: jwks_file - valid passes, unknown kid and missing scope are 401, shared tokens still "
    "work") {
  const jose::Key key = jose::Key::generate(jose::Alg::kPS256);
  TempDir dir;
  write_file(dir.path() / "jwks.json", jwks_of({{key, "file-key", jose::Alg::kPS256}}));
  Server server(dir, jwt_config(R"("jwks_file": ")" + (dir.path() / "jwks.json").string() + "\"",
                                R"("required_scope": "redox/webhook")", true));
  INFO("server log tail:\n", server.log_tail());
  // The start line names the ways in that are open (names only, no secret).
  CHECK(server.wait_for_line({"listening", "auth=verification_tokens,jwt "}).has_value());

  TestClaims scoped;
  scoped.scope = "openid redox/webhook";
  const std::string valid = signed_jwt(key, "file-key", jose::Alg::kPS256, scoped);
  CHECK(post_status(server, valid) == 200);
  const std::string unscoped = signed_jwt(key, "file-key", jose::Alg::kPS256);
  CHECK(post_status(server, unscoped) == 401);
  expect_refused_for(server, "scope");
  const jose::Key other = jose::Key::generate(jose::Alg::kPS256);
  CHECK(post_status(server, signed_jwt(other, "other", jose::Alg::kPS256, scoped)) == 401);
  expect_refused_for(server, "kid");

  // The shared token as before, and the challenge only with it.
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
  HttpRequest challenge;
  challenge.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + valid}};
  challenge.body = R"({"challenge":"c-jwt-1"})";
  CHECK(http(server.port(), challenge).status == 401);
  const auto get_jwt = http(server.port(), [&] {
    auto r = get("/webhook?challenge=c-jwt-2");
    r.headers.emplace_back("Authorization", "Bearer " + valid);
    return r;
  }());
  CHECK(get_jwt.status == 401);
  const auto get_shared =
      http(server.port(), get("/webhook?challenge=c-3&verification-token=test-token"));
  CHECK(get_shared.status == 200);
  CHECK(get_shared.body == "c-3");
  CHECK(journal_count(server, "events") == 2);
  check_log_free_of(server, {valid, unscoped});
}
