// The authentication settings: jwt and oauth_server (inbound), the download handler's auth
// (outbound), and the rules across their keys.
#include <doctest/doctest.h>

#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::contains;
using test::error_of;
using test::errors_of;
using test::joined;
using test::parse_ok;
using test::with_handler;

const Environment kNoEnv = {};

constexpr std::string_view kJwt =
    R"({"jwt": {"jwks_url": "https://idp.example/jwks", "issuer": "https://idp.example",
                "audience": "fbr"}})";

TEST_CASE("config auth: jwt or oauth_server alone authenticates, no shared token needed") {
  const Config jwt = parse_ok(kJwt, kNoEnv);
  CHECK(jwt.verification_tokens.empty());
  CHECK(jwt.jwt.enabled());
  CHECK(jwt.jwt.leeway_s == 60);
  CHECK(jwt.jwt.jwks_refresh_s == 3600);
  CHECK(jwt.jwt.algorithms.size() == 6);
  const Config oauth = parse_ok(
      R"({"oauth_server": {"clients": [{"client_id": "redox", "client_secret_env": "S"}]}})",
      kNoEnv);
  CHECK(oauth.oauth_server.enabled());
  CHECK(oauth.oauth_server.token_ttl_s == 300);
  CHECK(oauth.oauth_server.signing_key_file.empty());
  // Neither, and no token: the one message says every way out.
  CHECK(contains(error_of("{}", kNoEnv), "unless jwt or oauth_server authenticates requests"));
}

TEST_CASE("config auth: jwt needs one key source, an issuer and an audience") {
  const auto errors = errors_of(R"({"jwt": {"issuer": "i"}})");
  INFO(joined(errors));
  CHECK(errors.size() == 2);
  CHECK(contains(joined(errors), "jwt: exactly one of jwks_file or jwks_url is required"));
  CHECK(contains(joined(errors), "jwt.audience: required with jwt"));
  CHECK(contains(error_of(R"({"jwt": {"jwks_file": "/k", "jwks_url": "https://i/k", "issuer": "i",
                           "audience": "a"}})"),
                 "exactly one of jwks_file or jwks_url"));
  CHECK(contains(error_of(R"({"jwt": {"jwks_file": "/k", "audience": "a"}})"),
                 "jwt.issuer: required with jwt"));
}

TEST_CASE("config auth: a JWKS over plain http only from a loopback host") {
  CHECK(contains(error_of(R"({"jwt": {"jwks_url": "http://idp.example/jwks", "issuer": "i",
                                      "audience": "a"}})"),
                 "jwt.jwks_url: must be https://"));
  for (const char* url : {"http://127.0.0.1:9/jwks", "http://localhost/jwks", "http://[::1]:9/k"}) {
    CAPTURE(url);
    const Config c = parse_ok(std::string(R"({"jwt": {"jwks_url": ")") + url +
                              R"(", "issuer": "i", "audience": "a"}})");
    CHECK(c.jwt.jwks_url == url);
  }
}

TEST_CASE("config auth: algorithms are the six JWS ones, never none or HMAC") {
  CHECK(parse_ok(R"({"jwt": {"jwks_file": "/k", "issuer": "i", "audience": "a",
                             "algorithms": ["ES384"]}})")
            .jwt.algorithms == std::vector<std::string>{"ES384"});
  for (const char* bad : {R"(["none"])", R"(["HS256"])", "[]", R"(["ES384", "ES384"])"}) {
    CAPTURE(bad);
    CHECK(contains(error_of(std::string(R"({"jwt": {"jwks_file": "/k", "issuer": "i",
                                                    "audience": "a", "algorithms": )") +
                            bad + "}}"),
                   "jwt.algorithms"));
  }
}

TEST_CASE("config auth: the jwt overrides come from FBR_JWT_*") {
  const Config c = parse_ok("{}", {{"FBR_JWT_JWKS_URL", "https://idp/jwks"},
                                   {"FBR_JWT_ISSUER", "https://idp"},
                                   {"FBR_JWT_AUDIENCE", "fbr"}});
  CHECK(c.jwt.jwks_url == "https://idp/jwks");
  CHECK(c.jwt.issuer == "https://idp");
  CHECK(c.jwt.audience == "fbr");
}

TEST_CASE("config auth: oauth_server clients each need an id and a secret variable") {
  CHECK(contains(error_of(R"({"oauth_server": {"clients": [{"client_id": "a"}]}})"),
                 "oauth_server.clients[0].client_secret_env: is required"));
  CHECK(contains(error_of(R"({"oauth_server": {"clients": [{"client_secret_env": "S"}]}})"),
                 "oauth_server.clients[0].client_id: is required"));
  CHECK(contains(error_of(R"({"oauth_server": {"clients": [
                   {"client_id": "a", "client_secret_env": "S"},
                   {"client_id": "a", "client_secret_env": "T"}]}})"),
                 "oauth_server.clients[1].client_id"));
  CHECK(contains(error_of(R"({"oauth_server": {"clients": [
                   {"client_id": "a", "client_secret_env": "not a name"}]}})"),
                 "oauth_server.clients[0].client_secret_env"));
  CHECK(contains(error_of(R"({"oauth_server": {"clients": [
                   {"client_id": "a", "client_secret_env": "S", "client_secret": "x"}]}})"),
                 "oauth_server.clients[0].client_secret: unknown key"));
  // A key file or several: the first signs.
  CHECK(parse_ok(R"({"oauth_server": {"signing_key_file": "/k.pem"}})")
            .oauth_server.signing_key_file == std::vector<std::string>{"/k.pem"});
  CHECK(parse_ok(R"({"oauth_server": {"signing_key_file": ["/new.pem", "/old.pem"]}})")
            .oauth_server.signing_key_file.size() == 2);
}

std::string download_with_auth(std::string_view auth, std::string_view more = "") {
  return with_handler(R"({"name": "dl", "type": "download", "dir": "/dl", )" + std::string(more) +
                      R"("auth": )" + std::string(auth) + "}");
}

TEST_CASE("config auth: a smart_backend download handler") {
  const Config c = parse_ok(download_with_auth(
      R"({"type": "smart_backend", "token_url": "https://ehr.example/token",
          "client_id": "fbr", "private_key_file": "/keys/fbr.pem", "kid": "k1"})"));
  const auto& auth = std::get<DownloadHandler>(c.handlers[0].settings).auth;
  CHECK(auth.enabled());
  CHECK(auth.scope == "system/*.read");
  CHECK(auth.private_key_file == std::vector<std::string>{"/keys/fbr.pem"});
  CHECK(parse_ok(download_with_auth(R"({"type": "smart_backend",
                                        "fhir_base_url": "https://ehr.example/fhir",
                                        "client_id": "fbr", "private_key_file": "/k.json"})"))
            .handlers.size() == 1);
}

TEST_CASE("config auth: a download handler's auth rules") {
  const std::string smart = R"("type": "smart_backend", "client_id": "fbr",
                               "private_key_file": "/k.pem")";
  CHECK(contains(error_of(download_with_auth("{" + smart + "}")),
                 "exactly one of token_url or fhir_base_url"));
  CHECK(contains(error_of(download_with_auth(R"({"type": "smart_backend",
                                                 "token_url": "https://t/token",
                                                 "client_id": "fbr"})")),
                 "handlers[0].auth.private_key_file: is required"));
  CHECK(contains(error_of(download_with_auth("{" + smart + R"(, "token_url": "https://t/x"})",
                                             R"("token_env": "T", )")),
                 "exclusive"));
  CHECK(contains(error_of(download_with_auth("{" + smart + R"(, "token_url": "http://t/x"})")),
                 "must be https://"));
  CHECK(contains(error_of(download_with_auth(R"({"type": "client_credentials",
                                                 "token_url": "https://t/token",
                                                 "client_id": "fbr"})")),
                 "handlers[0].auth.client_secret_env: is required"));
  CHECK(contains(error_of(download_with_auth(R"({"token_url": "https://t/token"})")),
                 "handlers[0].auth.type: is required"));
  CHECK(contains(error_of(download_with_auth(R"({"type": "password"})")), "handlers[0].auth.type"));
  CHECK(contains(error_of(download_with_auth("{" + smart + R"(, "token_url": "https://t/x",
                                                                "alg": "HS256"})")),
                 "handlers[0].auth.alg"));
}

TEST_CASE("config auth: check-config shows names of secrets, never a secret") {
  const std::string json = to_redacted_json(parse_ok(
      R"({"oauth_server": {"clients": [{"client_id": "redox", "client_secret_env": "S"}]}})",
      {{"S", "the-secret-value"}}));
  CHECK(contains(json, R"("client_secret_env": "S")"));
  CHECK_FALSE(contains(json, "the-secret-value"));
}

}  // namespace
}  // namespace fbr::config
