// The download handler's `auth` (SMART Backend Services and client_credentials), end to end: the
// real binary on loopback asks the test token endpoint (smart_support), which checks each client
// assertion against the client's registered JWKS, and fetches the files from FileServer, which
// serves them only with a token the token endpoint issued and has not revoked. Every test greps
// the server's log, the journal's last_error and check-config for the assertions, the tokens and
// the secret.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "server/support/jose.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/smart_support.hpp"

using namespace fbr::itest;
using namespace fbr::itest::download;
using dispatch::DeliveryInfo;
using dispatch::poll_until;
using smart::ClientKey;
using smart::TokenServer;
namespace fs = std::filesystem;
namespace jose = fbr::server::jose;

namespace {

constexpr auto kDeadline = std::chrono::seconds(30);
const std::string kClient = "fbr-test-client";

/// A handler entry with `auth` (raw JSON members of the auth object) that sends its token to
/// 127.0.0.1.
std::string auth_handler(const std::string& name, const fs::path& dir, const std::string& auth,
                         const std::string& more = {}) {
  return download_handler(name, dir,
                          R"("token_hosts": ["127.0.0.1"], "auth": {)" + auth + "}" +
                              (more.empty() ? "" : ", " + more));
}

std::string smart_auth(const std::string& token_url, const fs::path& key_file,
                       const std::string& more = {}) {
  return R"("type": "smart_backend", "token_url": )" + dispatch::json_string(token_url) +
         R"(, "client_id": )" + dispatch::json_string(kClient) + R"(, "private_key_file": )" +
         dispatch::json_string(key_file.string()) + (more.empty() ? "" : ", " + more);
}

/// `count` small files on `files` (only served with a valid token of `tokens`), as event files.
std::vector<EventFile> protected_files(FileServer& files, const TokenServer& tokens,
                                       const std::string& prefix, std::size_t count) {
  std::vector<EventFile> out;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string path = "/" + prefix + "/Observation-" + std::to_string(i) + ".ndjson";
    files.put(
        path,
        Resource(generated_ndjson("Observation", 20, 200)).with_bearer_check(tokens.checker()));
    out.push_back({"Observation", files.url(path)});
  }
  return out;
}

/// Polls until the delivery has failed (retried or dead) after at least `attempts` tries; the
/// last row seen.
DeliveryInfo wait_attempts(const Server& server, const std::string& log_id,
                           const std::string& handler, int attempts) {
  std::optional<DeliveryInfo> last;
  const bool reached = poll_until(
      [&] {
        last = dispatch::delivery_of(server, log_id, handler);
        return last && last->attempts >= attempts &&
               (last->state == "failed" || last->state == "dead");
      },
      kDeadline);
  INFO(dispatch::describe_deliveries(server));
  INFO(server.log_tail(30));
  REQUIRE_MESSAGE(reached, handler, " was not tried ", attempts, " times");
  return *last;
}

/// None of `secrets` is in the server's log, the deliveries' last_error or check-config's output.
void expect_no_secrets(const Server& server, const std::vector<std::string>& secrets,
                       const std::vector<std::string>& log_ids) {
  const std::string log = server.log();
  std::string errors;
  for (const auto& id : log_ids) {
    for (const auto& d : dispatch::deliveries_of(server, id))
      errors += d.last_error + "\n";
  }
  const auto check = run_cli({"check-config", "--config", server.config_path().string()});
  CHECK_MESSAGE(check.exit_code == 0, check.output());
  for (const auto& secret : secrets) {
    REQUIRE_FALSE(secret.empty());
    CHECK_MESSAGE(log.find(secret) == std::string::npos, "a secret is in the server log");
    CHECK_MESSAGE(errors.find(secret) == std::string::npos, "a secret is in last_error");
    CHECK_MESSAGE(check.output().find(secret) == std::string::npos, "a secret is in check-config");
  }
}

/// The client's key as PEM in <tmp>/client-key.pem, registered with `tokens`.
fs::path registered_key(const TempDir& tmp, TokenServer& tokens, const ClientKey& key) {
  const fs::path file = tmp.path() / "client-key.pem";
  write_file(file, key.private_pem());
  tokens.register_jwks(kClient, key.jwks());
  return file;
}

}  // namespace

TEST_CASE("smart auth: the synthea export is fetched with a SMART Backend Services token") {
  TempDir tmp;
  TokenServer tokens;
  const ClientKey key;
  const fs::path key_file = registered_key(tmp, tokens, key);
  FileServer files;
  std::vector<EventFile> output;
  for (const auto& f : synthea()) {
    const std::string path = "/smart/" + f.type + ".ndjson";
    files.put(path, Resource(f.ndjson).with_bearer_check(tokens.checker()));
    output.push_back({f.type, files.url(path), static_cast<std::int64_t>(f.lines)});
  }
  REQUIRE(output.size() == 17);
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({auth_handler("fetch", downloads,
                                                   smart_auth(tokens.token_url(), key_file))}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, output, true));
  const DeliveryInfo done = wait_state(server, log_id, "fetch", "done");
  CHECK(done.attempts == 1);
  INFO(tokens.refusals().size());
  CHECK(tokens.refusals().empty());
  CHECK(tokens.token_requests() == 1);
  REQUIRE(tokens.issued().size() == 1);
  for (const auto& f : synthea()) {
    CAPTURE(f.type);
    CHECK(read_file(downloads / log_id / (f.type + ".1.ndjson")) == f.ndjson);
    const auto requests = files.requests("/smart/" + f.type + ".ndjson");
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].header("Authorization") == "Bearer " + tokens.issued()[0]);
  }
  // What the token endpoint was sent, beyond what it checked itself.
  REQUIRE(tokens.forms().size() == 1);
  const auto form = tokens.forms()[0];
  CHECK(form.at("scope") == "system/*.read");
  const auto header = jose::peek_header(tokens.assertions().at(0));
  REQUIRE(header.has_value());
  CHECK(header->kid == key.kid);
  CHECK(header->alg == "ES384");
  CHECK(header->jku.empty());
  expect_no_secrets(server, tokens.secrets(), {log_id});
}

TEST_CASE("smart auth: an assertion the token endpoint refuses leaves the delivery retried") {
  TempDir tmp;
  TokenServer tokens;
  const ClientKey key;
  const fs::path key_file = tmp.path() / "client-key.pem";
  write_file(key_file, key.private_pem());
  tokens.register_jwks(kClient, ClientKey().jwks());  // another key is registered
  TokenServer refusing;
  refusing.register_jwks(kClient, key.jwks());
  refusing.refuse_clients("bad signature");
  FileServer files;
  const auto output = protected_files(files, tokens, "refused", 3);
  const fs::path downloads = tmp.path() / "downloads";
  Server server(
      tmp,
      download_config(
          {auth_handler("unregistered", downloads / "a", smart_auth(tokens.token_url(), key_file)),
           auth_handler("refused", downloads / "b", smart_auth(refusing.token_url(), key_file),
                        R"("parallel": 3)")}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, output, true));

  // The endpoint's own check: the signature is not by the registered key.
  const DeliveryInfo unregistered = wait_attempts(server, log_id, "unregistered", 2);
  CHECK(unregistered.last_error.find("access token: token endpoint " + tokens.token_url() +
                                     " answered 401: invalid_client: signature: ") !=
        std::string::npos);
  CHECK((unregistered.state == "failed" || unregistered.state == "dead"));
  CHECK_FALSE(tokens.refusals().empty());
  CHECK(tokens.issued().empty());

  // A refusal in the endpoint's own words; one token request per attempt, not one per file.
  const DeliveryInfo refused = wait_attempts(server, log_id, "refused", 2);
  CHECK(refused.last_error.find("token endpoint " + refusing.token_url() +
                                " answered 401: invalid_client: bad signature") !=
        std::string::npos);
  CHECK(refused.last_error.starts_with("3 of 3 files failed: "));
  CHECK(refusing.token_requests() <= static_cast<std::size_t>(refused.attempts) + 1);
  // No file server saw a request without a token.
  CHECK(files.count() == 0);
  std::vector<std::string> secrets = tokens.secrets();
  for (const auto& a : refusing.assertions())
    secrets.push_back(a);
  expect_no_secrets(server, secrets, {log_id});
}

TEST_CASE("smart auth: 80 files in two parallel deliveries make exactly one token request") {
  TempDir tmp;
  TokenServer tokens;
  tokens.set_delay(std::chrono::milliseconds(300));  // every caller arrives while it is asked
  const fs::path key_file = registered_key(tmp, tokens, ClientKey(jose::Alg::kRS384));
  FileServer files;
  const auto first = protected_files(files, tokens, "one", 40);
  const auto second = protected_files(files, tokens, "two", 40);
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config(
                         {auth_handler("fetch", downloads, smart_auth(tokens.token_url(), key_file),
                                       R"("parallel": 8, "concurrency": 2)")}));
  const std::string a = new_log_id();
  const std::string b = new_log_id();
  post_ok(server, export_event(a, first, true));
  post_ok(server, export_event(b, second, true));
  CHECK(wait_state(server, a, "fetch", "done").attempts == 1);
  CHECK(wait_state(server, b, "fetch", "done").attempts == 1);
  CHECK(tokens.token_requests() == 1);
  CHECK(tokens.refusals().empty());
  CHECK(files.count() == 80);
  CHECK(fs::exists(downloads / a / "Observation.40.ndjson"));
  CHECK(fs::exists(downloads / b / "Observation.40.ndjson"));
  const auto header = jose::peek_header(tokens.assertions().at(0));
  REQUIRE(header.has_value());
  CHECK(header->alg == "RS384");  // an RSA key's default
  expect_no_secrets(server, tokens.secrets(), {a, b});
}

TEST_CASE("smart auth: a revoked token gets one new token request and the delivery completes") {
  TempDir tmp;
  TokenServer tokens;
  const fs::path key_file = registered_key(tmp, tokens, ClientKey());
  FileServer files;
  const auto first = protected_files(files, tokens, "before", 4);
  const auto second = protected_files(files, tokens, "after", 8);
  const fs::path downloads = tmp.path() / "downloads";
  Server server(
      tmp, download_config({auth_handler("fetch", downloads,
                                         smart_auth(tokens.token_url(), key_file,
                                                    R"("jku": "https://keys.example/jwks.json")"),
                                         R"("parallel": 4)")}));
  const std::string a = new_log_id();
  post_ok(server, export_event(a, first, true));
  CHECK(wait_state(server, a, "fetch", "done").attempts == 1);
  CHECK(tokens.token_requests() == 1);

  // The cached token is revoked: the next delivery's files get 401, one asks for a new token.
  tokens.revoke_all();
  const std::string b = new_log_id();
  post_ok(server, export_event(b, second, true));
  CHECK(wait_state(server, b, "fetch", "done").attempts == 1);
  CHECK(tokens.token_requests() == 2);
  REQUIRE(tokens.issued().size() == 2);
  int refused = 0;
  for (const auto& f : second) {
    const auto requests = files.requests(f.url.substr(f.url.find("/after/")));
    REQUIRE_FALSE(requests.empty());
    CHECK(requests.back().header("Authorization") == "Bearer " + tokens.issued()[1]);
    for (const auto& r : requests)
      refused += r.header("Authorization") == "Bearer " + tokens.issued()[0] ? 1 : 0;
  }
  CHECK(refused >= 1);
  const auto header = jose::peek_header(tokens.assertions().at(1));
  REQUIRE(header.has_value());
  CHECK(header->jku == "https://keys.example/jwks.json");
  expect_no_secrets(server, tokens.secrets(), {a, b});
}

TEST_CASE("smart auth: the token endpoint is discovered from fhir_base_url once") {
  TempDir tmp;
  TokenServer tokens;
  const fs::path key_file = registered_key(tmp, tokens, ClientKey());
  TokenServer elsewhere;  // names a token endpoint on a host outside allowed_hosts
  elsewhere.set_discovered_endpoint("http://127.0.0.2:" + std::to_string(elsewhere.port()) +
                                    "/token");
  FileServer files;
  const auto output = protected_files(files, tokens, "found", 3);
  const fs::path downloads = tmp.path() / "downloads";
  const std::string discovered = R"("type": "smart_backend", "fhir_base_url": )";
  const std::string rest = R"(, "client_id": )" + dispatch::json_string(kClient) +
                           R"(, "private_key_file": )" + dispatch::json_string(key_file.string());
  Server server(
      tmp,
      download_config(
          {auth_handler("found", downloads / "a",
                        discovered + dispatch::json_string(tokens.fhir_base_url() + "/") + rest),
           auth_handler("outside", downloads / "b",
                        discovered + dispatch::json_string(elsewhere.fhir_base_url()) + rest)}));
  const std::string a = new_log_id();
  const std::string b = new_log_id();
  post_ok(server, export_event(a, output, true));
  wait_state(server, a, "found", "done");
  post_ok(server, export_event(b, output, true));
  wait_state(server, b, "found", "done");
  CHECK(tokens.discovery_requests() == 1);
  CHECK(tokens.token_requests() == 1);  // the token is kept across deliveries too
  CHECK(tokens.refusals().empty());     // aud was the discovered URL

  // The discovered endpoint is held to the egress policy like any URL: refused, no connection.
  const DeliveryInfo dead = wait_state(server, a, "outside", "dead");
  CHECK(dead.attempts == 1);
  CHECK(dead.last_error.find(
            "access token: token endpoint http://127.0.0.2:" + std::to_string(elsewhere.port()) +
            "/token: refused host 127.0.0.2: not in allowed_hosts") != std::string::npos);
  CHECK(elsewhere.discovery_requests() >= 1);
  CHECK(elsewhere.token_requests() == 0);
  expect_no_secrets(server, tokens.secrets(), {a, b});
}

TEST_CASE("smart auth: client_credentials sends the secret as HTTP Basic") {
  TempDir tmp;
  const std::string secret = "s3cr:et/+&%-client-secret-4711";
  TokenServer tokens;
  tokens.register_secret(kClient, secret);
  TokenServer wrong;
  wrong.register_secret(kClient, "another-secret");
  FileServer files;
  const auto output = protected_files(files, tokens, "basic", 3);
  const fs::path downloads = tmp.path() / "downloads";
  const auto basic = [&](const TokenServer& server) {
    return R"("type": "client_credentials", "token_url": )" +
           dispatch::json_string(server.token_url()) + R"(, "client_id": )" +
           dispatch::json_string(kClient) +
           R"(, "client_secret_env": "DL_TEST_CLIENT_SECRET", "scope": "system/Observation.read")";
  };
  ServerConfig config = download_config({auth_handler("basic", downloads / "a", basic(tokens)),
                                         auth_handler("wrong", downloads / "b", basic(wrong))});
  config.environment.push_back("DL_TEST_CLIENT_SECRET=" + secret);
  Server server(tmp, config);
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, output, true));
  CHECK(wait_state(server, log_id, "basic", "done").attempts == 1);
  CHECK(tokens.token_requests() == 1);
  CHECK(tokens.refusals().empty());
  CHECK(tokens.forms().at(0).at("scope") == "system/Observation.read");
  CHECK(tokens.forms().at(0).count("client_assertion") == 0);

  const DeliveryInfo failed = wait_attempts(server, log_id, "wrong", 2);
  CHECK(failed.last_error.find("token endpoint " + wrong.token_url() +
                               " answered 401: invalid_client: bad client secret") !=
        std::string::npos);
  std::vector<std::string> secrets = tokens.secrets();
  secrets.push_back("s3cr%3Aet%2F%2B%26%25-client-secret-4711");  // its form-encoded form
  expect_no_secrets(server, secrets, {log_id});
}

TEST_CASE("smart auth: an unusable key, alg or secret variable stops the start naming it") {
  const ClientKey key;
  const auto start_error = [](const TempDir& tmp, const std::string& handler,
                              std::vector<std::string> environment = {}) {
    ServerConfig config = download_config({handler});
    config.environment = std::move(environment);
    CHECK_THROWS(Server(tmp, config));
    return read_file(tmp.path() / "server.log");
  };
  {
    TempDir tmp;
    const fs::path bad = tmp.path() / "bad-key.pem";
    write_file(bad,
               "-----BEGIN PRIVATE KEY-----\nTm90QUtleUF0QWxsLXNlY3JldGJ5dGVz\n"
               "-----END PRIVATE KEY-----\n");
    const std::string log = start_error(
        tmp, auth_handler("fetch", tmp.path() / "d", smart_auth("https://ehr.example/token", bad)));
    CHECK(log.find("handler fetch: auth private_key_file " + bad.string()) != std::string::npos);
    CHECK(log.find("Tm90QUtleUF0QWxsLXNlY3JldGJ5dGVz") == std::string::npos);
  }
  {
    TempDir tmp;
    const fs::path file = tmp.path() / "key.pem";
    write_file(file, key.private_pem());
    const std::string log =
        start_error(tmp, auth_handler("fetch", tmp.path() / "d",
                                      smart_auth("https://ehr.example/token", file,
                                                 R"("alg": "ES256")")));  // a P-384 key
    CHECK(log.find("handler fetch: auth alg ES256 does not fit the key of private_key_file " +
                   file.string()) != std::string::npos);
    const std::string pem = key.private_pem();
    CHECK(log.find(pem.substr(pem.find('\n') + 1, 40)) == std::string::npos);
  }
  {
    TempDir tmp;
    const std::string log = start_error(
        tmp,
        auth_handler("fetch", tmp.path() / "d",
                     R"("type": "client_credentials", "token_url": "https://ehr.example/token", )"
                     R"("client_id": "x", "client_secret_env": "DL_TEST_UNSET_SECRET")"));
    CHECK(log.find("handler fetch: auth client_secret_env names the environment variable "
                   "DL_TEST_UNSET_SECRET, which is not set") != std::string::npos);
  }
}

TEST_CASE("smart auth: a token URL outside allowed_hosts is refused before any connection") {
  TempDir tmp;
  TokenServer tokens;
  const fs::path key_file = registered_key(tmp, tokens, ClientKey());
  FileServer files;
  const auto output = protected_files(files, tokens, "outside", 2);
  const std::string outside = "http://127.0.0.2:" + std::to_string(tokens.port()) + "/token";
  const fs::path downloads = tmp.path() / "downloads";
  Server server(
      tmp,
      download_config({auth_handler("outside", downloads / "a", smart_auth(outside, key_file))}));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, output, true));
  const DeliveryInfo dead = wait_state(server, log_id, "outside", "dead");
  CHECK(dead.attempts == 1);
  CHECK(dead.last_error.find("token endpoint " + outside +
                             ": refused host 127.0.0.2: not in allowed_hosts") !=
        std::string::npos);
  CHECK(tokens.token_requests() == 0);
  CHECK(files.count() == 0);
}

TEST_CASE("smart auth: garbage, huge, slow and absent token endpoints give clear retry messages") {
  TempDir tmp;
  const ClientKey key;
  const fs::path key_file = tmp.path() / "client-key.pem";
  write_file(key_file, key.private_pem());
  struct Case {
    std::string name;
    std::string expected;
  };
  TokenServer html, no_token, huge, expired, slow;
  html.answer_with(200, "<html><body>login</body></html>", "text/html");
  no_token.answer_with(200, R"({"token_type": "bearer", "expires_in": 300})");
  huge.answer_with(200, R"({"access_token": ")" + std::string(100'000, 'a') + "\"}");
  expired.answer_with(200, R"({"access_token": "abc", "token_type": "bearer", "expires_in": -5})");
  slow.set_delay(std::chrono::milliseconds(5000));
  const std::string absent = "http://127.0.0.1:" + std::to_string(free_port()) + "/token";
  const std::vector<std::pair<std::string, std::string>> endpoints = {
      {"html", html.token_url()}, {"notoken", no_token.token_url()},
      {"huge", huge.token_url()}, {"expired", expired.token_url()},
      {"slow", slow.token_url()}, {"absent", absent}};
  const std::vector<Case> cases = {
      {"html", "token endpoint " + html.token_url() +
                   " answered 200 with a body that is not a JSON object (31 bytes)"},
      {"notoken",
       "token endpoint " + no_token.token_url() + " answered 200 without an access_token string"},
      {"huge", "token endpoint " + huge.token_url() + " answered with more than 65536 bytes"},
      {"expired", "token endpoint " + expired.token_url() +
                      " answered 200 with an expires_in that is not a number of seconds"},
      {"slow", "token endpoint " + slow.token_url() + ": Timeout was reached"},
      {"absent", "token endpoint " + absent + ": Couldn't connect to server"}};
  std::vector<std::string> handlers;
  for (const auto& [name, url] : endpoints) {
    handlers.push_back(auth_handler(name, tmp.path() / name, smart_auth(url, key_file),
                                    R"("idle_timeout_ms": 1000)"));
  }
  FileServer files;
  TokenServer never;  // the files need a token nobody gets
  const auto output = protected_files(files, never, "garbage", 2);
  Server server(tmp, download_config(handlers));
  const std::string log_id = new_log_id();
  post_ok(server, export_event(log_id, output, true));
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const DeliveryInfo failed = wait_attempts(server, log_id, c.name, 2);
    CHECK_MESSAGE(failed.last_error.find(c.expected) != std::string::npos, failed.last_error);
  }
  CHECK(files.count() == 0);
  std::vector<std::string> secrets{std::string(1000, 'a')};
  for (const TokenServer* s : {&html, &no_token, &huge, &expired, &slow}) {
    for (const auto& a : s->assertions())
      secrets.push_back(a);
  }
  expect_no_secrets(server, secrets, {log_id});
}
