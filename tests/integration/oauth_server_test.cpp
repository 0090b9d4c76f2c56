// The built-in OAuth 2.0 token endpoint (POST /oauth/token, client credentials) and the published
// keys (GET /.well-known/jwks.json): a token issued with either client authentication method
// authenticates an event; a wrong secret, an unknown client, a bad grant or missing fields get
// RFC 6749's errors; an expired token is refused; a generated key is 0600 and outlives a restart;
// a client whose secret variable is unset fails the start. The log never holds a secret.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/integration/auth_support.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using namespace fbr::itest::auth;

namespace {

constexpr const char* kSecretVar = "REDOX_CLIENT_SECRET";
const std::string kSecret = "s3cret-Redox-client+/=value";

ServerConfig oauth_config(const std::string& more = {}, bool with_tokens = false) {
  ServerConfig config;
  if (!with_tokens) config.tokens.reset();
  config.environment = {std::string(kSecretVar) + "=" + kSecret};
  config.extra_members =
      R"("oauth_server": {"clients": [{"client_id": "redox", "client_secret_env": ")" +
      std::string(kSecretVar) + "\"}]" + (more.empty() ? "" : ", " + more) + "}";
  return config;
}

std::string form_encode(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string base64(std::string_view bytes) {
  std::string out = jose::base64url_encode(bytes);
  std::replace(out.begin(), out.end(), '-', '+');
  std::replace(out.begin(), out.end(), '_', '/');
  while (out.size() % 4 != 0)
    out += '=';
  return out;
}

HttpRequest token_request(std::string form) {
  HttpRequest request;
  request.target = "/oauth/token";
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  request.body = std::move(form);
  return request;
}

HttpRequest post_form(const std::string& id, const std::string& secret) {
  return token_request("grant_type=client_credentials&client_id=" + form_encode(id) +
                       "&client_secret=" + form_encode(secret));
}

HttpRequest basic_form(const std::string& id, const std::string& secret) {
  auto request = token_request("grant_type=client_credentials");
  request.headers.emplace_back("Authorization",
                               "Basic " + base64(form_encode(id) + ":" + form_encode(secret)));
  return request;
}

/// The access token of a 200 answer (fails the test otherwise).
std::string issued_token(const HttpResponse& r, unsigned ttl_s = 300) {
  REQUIRE_MESSAGE(r.status == 200, r.status, " ", r.body);
  CHECK(r.header("Cache-Control").value_or("") == "no-store");
  const auto doc = parse_json(r.body);
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(json_str(doc, "/token_type") == "Bearer");
  CHECK(json_raw(doc, "/expires_in") == std::to_string(ttl_s));
  return json_str(doc, "/access_token");
}

int post_status(const Server& server, const std::string& token) {
  return http(server.port(), post_with_bearer(event_with_log_id(new_log_id()), token)).status;
}

}  // namespace

TEST_CASE(
    "oauth_server: tokens by client_secret_post and client_secret_basic authenticate events - a "
    "wrong secret or client is 401 invalid_client") {
  TempDir dir;
  Server server(dir, oauth_config());
  INFO("server log tail:\n", server.log_tail());
  CHECK(server.wait_for_line({"listening", "oauth_server"}).has_value());

  const std::string by_post = issued_token(http(server.port(), post_form("redox", kSecret)));
  const std::string by_basic = issued_token(http(server.port(), basic_form("redox", kSecret)));
  const auto r = http(server.port(), post_with_bearer(event_with_log_id(kSeedLogId), by_post));
  CHECK(r.status == 200);
  CHECK(journal_count(server, "events", "log_id = ?", {kSeedLogId}) == 1);
  CHECK(post_status(server, by_basic) == 200);
  // The token's claims: ours, for this client.
  const auto payload = jose::base64url_decode(
      by_post.substr(by_post.find('.') + 1, by_post.rfind('.') - by_post.find('.') - 1));
  REQUIRE(payload.has_value());
  const auto claims = parse_json(*payload);
  CHECK(json_str(claims, "/iss") == "fhir-bulk-receiver");
  CHECK(json_str(claims, "/sub") == "redox");
  CHECK(json_str(claims, "/jti") != "<absent>");

  const auto wrong = http(server.port(), post_form("redox", kSecret + "x"));
  CHECK(wrong.status == 401);
  CHECK(wrong.body == R"({"error":"invalid_client"})");
  CHECK_FALSE(wrong.header("WWW-Authenticate").has_value());
  const auto wrong_basic = http(server.port(), basic_form("redox", "nope"));
  CHECK(wrong_basic.status == 401);
  CHECK(wrong_basic.body == R"({"error":"invalid_client"})");
  CHECK(wrong_basic.header("WWW-Authenticate").value_or("").starts_with("Basic"));
  CHECK(http(server.port(), post_form("mallory", kSecret)).status == 401);
  CHECK(server.wait_for_line({"token_refused", "invalid_client"}).has_value());

  // A forged token signed by some other key with our issuer, and a shared-token-less challenge.
  const jose::Key forger = jose::Key::generate(jose::Alg::kES384);
  TestClaims ours;
  ours.iss = "fhir-bulk-receiver";
  ours.aud = "fhir-bulk-receiver";
  const std::string forged = signed_jwt(forger, forger.kid(), jose::Alg::kES384, ours);
  CHECK(post_status(server, forged) == 401);
  expect_refused_for(server, "kid");
  CHECK(journal_count(server, "events") == 2);
  check_log_free_of(server, {kSecret, by_post, by_basic, forged});
}

TEST_CASE(
    "oauth_server: a bad grant_type is 400 unsupported_grant_type - missing fields are 400 "
    "invalid_request") {
  TempDir dir;
  Server server(dir, oauth_config());
  INFO("server log tail:\n", server.log_tail());
  const auto grant = http(
      server.port(),
      token_request("grant_type=password&client_id=redox&client_secret=" + form_encode(kSecret)));
  CHECK(grant.status == 400);
  CHECK(grant.body == R"({"error":"unsupported_grant_type"})");
  for (const std::string form : {"client_id=redox", "grant_type=client_credentials&client_id=redox",
                                 "grant_type=client_credentials",
                                 "grant_type=client_credentials&grant_type=client_credentials&"
                                 "client_id=redox&client_secret=x",
                                 "grant_type=%zz"}) {
    const auto r = http(server.port(), token_request(form));
    CHECK_MESSAGE(r.status == 400, form);
    CHECK(r.body == R"({"error":"invalid_request"})");
  }
  auto not_a_form = post_form("redox", kSecret);
  not_a_form.headers[0].second = "application/json";
  CHECK(http(server.port(), not_a_form).status == 400);
  CHECK(http(server.port(), get("/oauth/token")).status == 405);
  // Past limits.max_unauthenticated_body_bytes: 413 before the body is read.
  CHECK(http(server.port(), token_request(std::string(10'000, 'a'))).status == 413);
  check_log_free_of(server, {kSecret});
}

TEST_CASE("oauth_server: a token past expires_in (plus the own tokens' 5 s leeway) is refused") {
  TempDir dir;
  Server server(dir, oauth_config(R"("token_ttl_s": 1)"));
  INFO("server log tail:\n", server.log_tail());
  const std::string token = issued_token(http(server.port(), post_form("redox", kSecret)), 1);
  CHECK(post_status(server, token) == 200);
  // exp = iat + 1, refused once exp + 5 s has passed: within 8 s, and not before 5 s.
  const auto started = std::chrono::steady_clock::now();
  CHECK(dispatch::poll_until([&] { return post_status(server, token) == 401; }, 10s, 250ms));
  CHECK(ms_since(started) >= 4000);
  expect_refused_for(server, "expired");
  check_log_free_of(server, {kSecret, token});
}

TEST_CASE(
    "oauth_server: the generated signing key is 0600 and reused after a restart - an old token "
    "still passes") {
  TempDir dir;
  Server server(dir, oauth_config());
  INFO("server log tail:\n", server.log_tail());
  const auto key_file = server.data_dir() / "oauth-signing-key.pem";
  REQUIRE(std::filesystem::exists(key_file));
  CHECK(download::mode_of(key_file) == 0600);
  const std::string pem = read_file(key_file);
  const std::string token = issued_token(http(server.port(), post_form("redox", kSecret)));
  const std::string jwks_before = http(server.port(), get("/.well-known/jwks.json")).body;

  server.restart();
  CHECK(read_file(key_file) == pem);
  CHECK(post_status(server, token) == 200);
  CHECK(http(server.port(), get("/.well-known/jwks.json")).body == jwks_before);
  // A line from the middle of the PEM: no part of the key is logged.
  const auto mid = pem.find('\n', pem.size() / 2);
  check_log_free_of(server, {kSecret, token, pem.substr(mid + 1, 40)});
}

TEST_CASE(
    "oauth_server: a client whose secret variable is unset fails the start, naming the variable") {
  TempDir dir;
  ServerConfig config = oauth_config();
  config.environment.clear();
  write_file(dir.path() / "config.json", config_json(config, dir.path() / "data"));
  const auto result =
      run_cli({"serve", "--config", (dir.path() / "config.json").string()}, {}, 20s);
  CHECK(result.exit_code != 0);
  CHECK_MESSAGE(result.output().find(kSecretVar) != std::string::npos, result.output());
}

TEST_CASE(
    "jwks.json: the oauth signing keys and a download handler's keys are published - 404 without "
    "keys") {
  TempDir dir;
  std::vector<jose::Key> keys;
  std::vector<std::string> files;
  for (int i = 0; i < 4; ++i) {
    keys.push_back(jose::Key::generate(i % 2 == 0 ? jose::Alg::kES384 : jose::Alg::kRS384));
    files.push_back((dir.path() / ("key-" + std::to_string(i) + ".pem")).string());
    write_file(files.back(), keys.back().private_pem());
  }
  ServerConfig config =
      oauth_config(R"("signing_key_file": [")" + files[0] + R"(", ")" + files[1] + R"("])");
  config.extra_members +=
      ",\n  \"handlers\": [" +
      download::download_handler(
          "fetch", dir.path() / "downloads",
          R"("auth": {"type": "smart_backend", "token_url": "http://127.0.0.1:9/token", )"
          R"("client_id": "fbr", "kid": "dl-2026", "private_key_file": [")" +
              files[2] + R"(", ")" + files[3] + R"("]})") +
      "]";
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());

  const auto r = http(server.port(), get("/.well-known/jwks.json"));
  REQUIRE(r.status == 200);
  CHECK(r.header("Cache-Control").value_or("") == "max-age=300");
  const auto doc = parse_json(r.body);
  REQUIRE(doc.HasMember("keys"));
  std::vector<std::string> kids;
  for (const auto& k : doc["keys"].GetArray()) {
    CHECK_FALSE(k.HasMember("d"));  // public halves only
    kids.push_back(k["kid"].GetString());
  }
  const std::vector<std::string> expected{keys[0].kid(), keys[1].kid(), "dl-2026", keys[3].kid()};
  CHECK(kids == expected);
  // The second signing key verifies too: a token it signed (our claims, our kid) passes.
  TestClaims ours;
  ours.iss = "fhir-bulk-receiver";
  ours.aud = "fhir-bulk-receiver";
  const std::string by_second = signed_jwt(keys[1], keys[1].kid(), jose::Alg::kRS384, ours);
  CHECK(post_status(server, by_second) == 200);
  // A download handler's key is published, not trusted for inbound tokens.
  CHECK(post_status(server, signed_jwt(keys[2], keys[2].kid(), jose::Alg::kES384, ours)) == 401);

  TempDir plain_dir;
  Server plain(plain_dir);
  CHECK(http(plain.port(), get("/.well-known/jwks.json")).status == 404);
  CHECK(http(plain.port(), post_form("redox", kSecret)).status == 404);
  std::vector<std::string> pem_lines;
  for (const auto& key : keys) {
    const std::string pem = key.private_pem();
    pem_lines.push_back(pem.substr(pem.find('\n', pem.size() / 2) + 1, 40));
  }
  pem_lines.push_back(kSecret);
  check_log_free_of(server, pem_lines);
}

TEST_CASE(
    "oauth_server: a reload rebuilds authentication - an unset secret variable refuses it, a "
    "removed endpoint stops its tokens") {
  TempDir dir;
  ServerConfig config = oauth_config({}, true);
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());
  const std::string token = issued_token(http(server.port(), post_form("redox", kSecret)));
  CHECK(post_status(server, token) == 200);

  ServerConfig unset = config;
  unset.extra_members =
      R"("oauth_server": {"clients": [{"client_id": "redox", "client_secret_env": "FBR_NOT_SET_ANYWHERE"}]})";
  write_file(server.config_path(), config_json(unset, server.data_dir()));
  REQUIRE(::kill(server.pid(), SIGHUP) == 0);
  CHECK(server.wait_for_line({"reload_refused", "FBR_NOT_SET_ANYWHERE"}).has_value());
  CHECK(post_status(server, token) == 200);

  ServerConfig tokens_only;
  write_file(server.config_path(), config_json(tokens_only, server.data_dir()));
  REQUIRE(::kill(server.pid(), SIGHUP) == 0);
  CHECK(server.wait_for_log("reloaded"));
  CHECK(post_status(server, token) == 401);
  CHECK(http(server.port(), post_form("redox", kSecret)).status == 404);
  CHECK(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);
  CHECK(server.terminate() == 0);
  check_log_free_of(server, {kSecret, token});
}
