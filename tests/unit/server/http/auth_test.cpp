// The Authenticator (server/http/auth.hpp): shared tokens, JWTs from a JWKS file, our own tokens,
// the verified-token cache, and the two admission steps agreeing on all of them.
#include "server/http/auth.hpp"

#include <doctest/doctest.h>
#include <spdlog/sinks/null_sink.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "server/http/admission.hpp"

using namespace fbr;
using namespace fbr::server;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kNow = 1'800'000'000;

struct Scratch {
  fs::path dir;
  Scratch() {
    std::string pattern = (fs::temp_directory_path() / "fbr-auth-XXXXXX").string();
    dir = ::mkdtemp(pattern.data());
  }
  ~Scratch() { fs::remove_all(dir); }
};

const Logger& quiet_log() {
  static const Logger log{config::Log{"off", config::LogFormat::kText},
                          std::make_shared<spdlog::sinks::null_sink_mt>()};
  return log;
}

const jose::Key& idp_key() {
  static const jose::Key key = jose::Key::generate(jose::Alg::kES256);
  return key;
}

std::string idp_token(std::int64_t exp, std::string aud = "hook") {
  jose::SignOptions options;
  options.alg = jose::Alg::kES256;
  options.kid = "k1";
  return jose::sign(idp_key(), options,
                    R"({"iss":"https://idp","aud":")" + aud + R"(","sub":"redox","exp":)" +
                        std::to_string(exp) + R"(,"iat":)" + std::to_string(kNow) + "}");
}

config::Config jwt_config(const Scratch& scratch) {
  const fs::path file = scratch.dir / "jwks.json";
  std::ofstream(file) << jose::jwks_json({{idp_key(), "k1", jose::Alg::kES256}});
  config::Config c;
  c.verification_tokens = {"shared"};
  c.data_dir = scratch.dir;
  c.jwt.jwks_file = file.string();
  c.jwt.issuer = "https://idp";
  c.jwt.audience = "hook";
  c.jwt.leeway_s = 10;
  return c;
}

RequestHeader bearer_post(const std::string& token) {
  RequestHeader h;
  h.method(http::verb::post);
  h.target("/webhook");
  h.set(http::field::authorization, "Bearer " + token);
  return h;
}

}  // namespace

TEST_CASE("auth: shared tokens only - no token, a wrong one, a JWT-looking one") {
  const Authenticator auth({"a", "b"});
  CHECK(auth.check("b", kNow).via == AuthCheck::Via::kSharedToken);
  CHECK(auth.check("", kNow).reason == "no token");
  CHECK(auth.check("c", kNow).reason == "wrong token");
  CHECK(auth.check(idp_token(kNow + 60), kNow).reason == "wrong token");
  CHECK(auth.shared_token_valid("a"));
  CHECK_FALSE(auth.shared_token_valid(""));
}

TEST_CASE("auth: a JWKS file's JWT passes and is cached - expiry is still enforced on each check") {
  Scratch scratch;
  const auto auth = Authenticator::build(jwt_config(scratch), quiet_log());
  const std::string token = idp_token(kNow + 60);
  CHECK(auth->check(token, kNow).via == AuthCheck::Via::kJwt);
  CHECK(auth->cache().size() == 1);
  CHECK(auth->check(token, kNow + 30).ok());
  CHECK(auth->check(token, kNow + 60 + 11).reason == "expired");
  CHECK(auth->cache().size() == 0);
  CHECK(auth->check(idp_token(kNow + 60, "other"), kNow).reason == "audience");
  CHECK(auth->check("shared", kNow).via == AuthCheck::Via::kSharedToken);
  // A file source never waits for a refetch.
  const jose::Key other = jose::Key::generate(jose::Alg::kES256);
  jose::SignOptions options{jose::Alg::kES256, "k2", {}, "JWT"};
  const auto unknown = auth->check(
      jose::sign(other, options,
                 R"({"iss":"https://idp","aud":"hook","exp":)" + std::to_string(kNow + 60) + "}"),
      kNow);
  CHECK_FALSE(unknown.pending());
  CHECK(unknown.reason == "kid");
}

TEST_CASE("auth: the header-time and body-time steps agree on a JWT") {
  Scratch scratch;
  const config::Config config = jwt_config(scratch);
  const auto auth = Authenticator::build(config, quiet_log());
  const std::string good = idp_token(kNow + 60);
  const Admission ok = admit(bearer_post(good), {100, false}, config, *auth, "/webhook", kNow);
  CHECK_FALSE(ok.early.has_value());
  CHECK(ok.body_limit == config.max_body_bytes);
  const std::string stale = idp_token(kNow - 60);
  const Admission refused =
      admit(bearer_post(stale), {100, false}, config, *auth, "/webhook", kNow);
  REQUIRE(refused.early.has_value());
  CHECK(refused.early->status == http::status::unauthorized);
  CHECK(refused.reason == "expired");

  const std::string body = R"({"challenge":"c1"})";
  const auto at_body = admit_event(bearer_post(stale), body, config, *auth, kNow, {});
  CHECK(at_body.outcome == EventOutcome::kUnauthorized);
  CHECK(at_body.reason == "expired");
  // A challenge is answered for the shared token only, not for a JWT.
  const auto jwt_challenge = admit_event(bearer_post(good), body, config, *auth, kNow, {});
  CHECK(jwt_challenge.outcome == EventOutcome::kUnauthorized);
  const auto shared_challenge = admit_event(bearer_post("shared"), body, config, *auth, kNow, {});
  CHECK(shared_challenge.outcome == EventOutcome::kChallenge);
}

TEST_CASE(
    "auth: our own tokens pass while their client is configured - an unset secret variable fails "
    "the build") {
  Scratch scratch;
  config::Config c;
  c.data_dir = scratch.dir;
  c.oauth_server.clients = {{"redox", "FBR_AUTH_TEST_SECRET"}};
  ::setenv("FBR_AUTH_TEST_SECRET", "hunter2-secret", 1);
  const auto auth = Authenticator::build(c, quiet_log());
  REQUIRE(auth->token_endpoint() != nullptr);
  const auto issued = answer_token_request(
      [] {
        RequestHeader h;
        h.method(http::verb::post);
        h.set(http::field::content_type, "application/x-www-form-urlencoded");
        return h;
      }(),
      "grant_type=client_credentials&client_id=redox&client_secret=hunter2-secret",
      *auth->token_endpoint(), kNow, "j1");
  REQUIRE(issued.error.empty());
  const auto start = issued.reply.body.find(R"("access_token":")") + 16;
  const std::string token =
      issued.reply.body.substr(start, issued.reply.body.find('"', start) - start);
  CHECK(auth->check(token, kNow + 10).via == AuthCheck::Via::kOwnToken);
  CHECK(auth->check(token, kNow + 300 + 6).reason == "expired");
  CHECK((fs::status(scratch.dir / kGeneratedSigningKey).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));
  CHECK_FALSE(auth->published_jwks().empty());

  // The same key (generated, reused), the client gone: its tokens stop passing.
  config::Config without = c;
  without.oauth_server.clients = {{"someone", "FBR_AUTH_TEST_SECRET"}};
  const auto next = Authenticator::build(without, quiet_log(), auth.get());
  CHECK(next->check(token, kNow + 10).reason == "unknown_client");

  ::unsetenv("FBR_AUTH_TEST_SECRET");
  try {
    (void)Authenticator::build(c, quiet_log());
    FAIL("an unset variable must fail the build");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("FBR_AUTH_TEST_SECRET") != std::string::npos);
    CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
  }
}

TEST_CASE("auth: the token cache is bounded - expired entries go first") {
  TokenCache cache;
  jose::Claims expired;
  expired.exp = kNow - 100;
  jose::Claims live;
  live.exp = kNow + 100;
  for (std::size_t i = 0; i < TokenCache::kCacheEntries; ++i)
    cache.insert("old-" + std::to_string(i), {expired, false}, kNow, 0);
  CHECK(cache.size() == TokenCache::kCacheEntries);
  cache.insert("new", {live, false}, kNow, 0);
  CHECK(cache.size() == 1);
  for (std::size_t i = 0; i < 2 * TokenCache::kCacheEntries; ++i)
    cache.insert("live-" + std::to_string(i), {live, false}, kNow, 0);
  CHECK(cache.size() <= TokenCache::kCacheEntries);
  CHECK(cache.find("new") == std::nullopt);  // cleared once full of live entries
}
