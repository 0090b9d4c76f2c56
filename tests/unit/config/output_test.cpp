// to_redacted_json: the effective config, every key, no secret; and the shipped config files.
#include <doctest/doctest.h>

#include <string>

#include "config/config.hpp"
#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::contains;
using test::parse_ok;

const std::string kConfigDir = std::string(FBR_FIXTURES) + "/../../config";

/// A config with a secret in every place one can be.
constexpr std::string_view kSecretConfig = R"({
  "verification_tokens": ["tok-AAAA-1111", "tok-BBBB-2222"],
  "journal": {"nats": {"servers": ["nats://jsuser:js-pass-7777@n1:4222"]}},
  "handlers": [
    {"name": "fwd", "type": "http", "url": "https://fwduser:fwd-pass-3333@example.org/in",
     "headers": {"X-Api-Key": "key-CCCC-4444", "Authorization": {"env": "FWD_AUTH"}}},
    {"name": "bus", "type": "nats", "servers": ["nats://bare-token-5555@n2:4222"],
     "subject": "s"},
    {"name": "run", "type": "exec", "command": ["notify"],
     "env": {"API_KEY": "exec-key-6666", "FROM": {"env": "EXEC_SECRET"}}},
    {"name": "dl", "type": "download", "dir": "/dl", "token_command": ["get-token"],
     "token_command_env": {"CLIENT_SECRET": "client-8888"}}
  ]
})";

TEST_CASE("config output: no secret appears the token count does") {
  const Config c = parse_ok(kSecretConfig, {});
  const std::string json = to_redacted_json(c);
  CAPTURE(json);
  for (const char* secret : {"tok-AAAA-1111", "tok-BBBB-2222", "key-CCCC-4444", "fwd-pass-3333",
                             "js-pass-7777", "bare-token-5555", "exec-key-6666", "client-8888"}) {
    CAPTURE(secret);
    CHECK_FALSE(contains(json, secret));
  }
  CHECK(contains(json, R"("verification_tokens": [
    "<redacted>",
    "<redacted>"
  ])"));
  CHECK(contains(json, R"("X-Api-Key": "<redacted>")"));
  CHECK(contains(json, R"("API_KEY": "<redacted>")"));
  CHECK(contains(json, R"("CLIENT_SECRET": "<redacted>")"));
  CHECK(contains(json, R"("FROM": {
          "env": "EXEC_SECRET"
        })"));
  CHECK(contains(json, R"("Authorization": {
          "env": "FWD_AUTH"
        })"));
  // User names stay (they help to debug), passwords and bare tokens go.
  CHECK(contains(json, R"("https://fwduser:<redacted>@example.org/in")"));
  CHECK(contains(json, R"("nats://jsuser:<redacted>@n1:4222")"));
  CHECK(contains(json, R"("nats://<redacted>@n2:4222")"));
}

TEST_CASE("config output: tokens from the environment are redacted too") {
  const std::string json =
      to_redacted_json(parse_ok("{}", {{"FBR_VERIFICATION_TOKEN", "env-s3cret-9999"}}));
  CHECK_FALSE(contains(json, "env-s3cret-9999"));
  CHECK(contains(json, R"("verification_tokens": [
    "<redacted>"
  ])"));
}

TEST_CASE("config output: the defaults every key present 2-space pretty JSON") {
  const std::string json = to_redacted_json(parse_ok("{}"));
  CHECK(json == R"({
  "listen": "127.0.0.1:8080",
  "path": "/webhook",
  "verification_tokens": [
    "<redacted>"
  ],
  "jwt": {
    "jwks_file": null,
    "jwks_url": null,
    "issuer": null,
    "audience": null,
    "algorithms": [
      "RS256",
      "RS384",
      "PS256",
      "PS384",
      "ES256",
      "ES384"
    ],
    "leeway_s": 60,
    "required_scope": null,
    "jwks_refresh_s": 3600
  },
  "oauth_server": {
    "clients": [],
    "signing_key_file": null,
    "token_ttl_s": 300
  },
  "data_dir": "./data",
  "max_body_bytes": 41943040,
  "invalid_payloads": "reject",
  "tls": {
    "cert_file": null,
    "key_file": null
  },
  "admin": {
    "listen": null,
    "tokens": [],
    "tls": {
      "cert_file": null,
      "key_file": null
    },
    "session_ttl_s": 43200
  },
  "log": {
    "level": "info",
    "format": "text"
  },
  "retry": {
    "max_attempts": 10,
    "initial_backoff_ms": 1000,
    "max_backoff_ms": 300000
  },
  "journal": {
    "backend": "sqlite",
    "nats": {
      "servers": [],
      "stream": "FBR_EVENTS",
      "subject": "fbr.events",
      "replicas": 1,
      "credentials_file": null,
      "duplicate_window_s": 86400,
      "token_env": null
    }
  },
  "dispatch": {
    "concurrency": 8
  },
  "limits": {
    "max_header_bytes": 16384,
    "header_timeout_ms": 10000,
    "body_timeout_ms": 60000,
    "idle_timeout_ms": 60000,
    "max_connections": 10000,
    "max_unauthenticated_body_bytes": 4096
  },
  "handlers": []
}
)");
}

TEST_CASE("config output: IPv6 listen addresses get their brackets back") {
  CHECK(contains(to_redacted_json(parse_ok(R"({"listen": "[::1]:9000"})")),
                 R"("listen": "[::1]:9000")"));
}

TEST_CASE("config output: a handler shows its type keys effective retry and filters") {
  const std::string json = to_redacted_json(parse_ok(R"({
    "retry": {"max_attempts": 4},
    "handlers": [{"name": "dl", "type": "download", "dir": "/dl", "token_file": "/run/t",
                  "when": {"status": [200], "test": false}}]})"));
  CHECK(contains(json, R"(
      "when": {
        "status": [
          200
        ],
        "test": false,
        "resource_types": null,
        "source_id": null,
        "destination_id": null
      },
      "retry": {
        "max_attempts": 4,
        "initial_backoff_ms": 1000,
        "max_backoff_ms": 300000
      },
      "concurrency": 8,
      "dir": "/dl",
      "parallel": 4,
      "auth": {
        "type": null,
        "token_url": null,
        "fhir_base_url": null,
        "client_id": null,
        "private_key_file": null,
        "kid": null,
        "alg": null,
        "scope": "system/*.read",
        "jku": null,
        "client_secret_env": null
      },
      "token_env": null,
      "token_file": "/run/t",
      "token_command": null,
      "token_command_env": {},
      "store": "ndjson",
      "connect_timeout_ms": 10000,
      "idle_timeout_ms": 60000,
      "min_speed_bytes_per_s": 1024,
      "min_speed_window_s": 60,
      "max_files": 10000,
      "transfer_attempts": 5,
      "max_retry_wait_ms": 30000,)"));
}

/// parse → print → parse → print gives the same text: the output is itself a valid config that
/// means the same thing (tokens aside, which come back as "<redacted>" placeholders).
void check_round_trip(const Config& config) {
  const std::string first = to_redacted_json(config);
  const LoadResult again = parse_config(first, {}, "redacted.json");
  INFO(first);
  INFO(test::joined(again.errors));
  REQUIRE(again.ok());
  CHECK(to_redacted_json(*again.config) == first);
}

TEST_CASE("config output: round trip of the secrets config and of every handler type") {
  check_round_trip(parse_ok(kSecretConfig, {}));
  check_round_trip(parse_ok(R"({
    "listen": "[::]:0", "invalid_payloads": "quarantine",
    "tls": {"cert_file": "c", "key_file": "k"}, "log": {"format": "json"},
    "journal": {"backend": "nats", "nats": {"servers": ["n"], "credentials_file": "/c"}},
    "handlers": [
      {"name": "f1", "type": "file", "dir": "d", "when": {"resource_types": ["Patient"],
                                                        "source_id": "s", "destination_id": "d"}},
      {"name": "f2", "type": "file", "path": "p.ndjson", "retry": {"max_attempts": 1}},
      {"name": "x", "type": "exec", "command": ["a", "b"], "timeout_ms": 5},
      {"name": "d", "type": "download", "dir": "d", "token_command": ["t", "-x"], "store": "gzip",
       "connect_timeout_ms": 1, "idle_timeout_ms": 2, "transfer_attempts": 3,
       "max_retry_wait_ms": 0},
      {"name": "n", "type": "nats", "servers": ["a", "b"], "subject": "s", "stream": "S"}
    ]})"));
}

TEST_CASE("config dev.json: the development config loads and round-trips") {
  const LoadResult r = load_config(kConfigDir + "/dev.json", {});
  INFO(test::joined(r.errors));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK(c.listen.host == "127.0.0.1");
  CHECK(c.listen.port == 8080);
  CHECK(c.path == "/webhook");
  CHECK(c.verification_tokens == std::vector<std::string>{"dev-token"});
  CHECK(c.data_dir == "./data");
  CHECK(c.log.level == "info");
  CHECK(c.log.format == LogFormat::kText);
  // The console on loopback without a token, a file and a download handler to look at in it.
  REQUIRE(c.admin.enabled());
  CHECK(c.admin.loopback());
  CHECK(c.admin.listen->port == 8081);
  CHECK(c.admin.tokens.empty());
  REQUIRE(c.handlers.size() == 2);
  CHECK(c.handlers[0].type == "file");
  CHECK(c.handlers[1].type == "download");
  CHECK(c.source_file == kConfigDir + "/dev.json");
  check_round_trip(c);
  CHECK_FALSE(contains(to_redacted_json(c), "dev-token"));
}

TEST_CASE("config examples: minimal.json loads with the token from the environment") {
  const std::string file = kConfigDir + "/examples/minimal.json";
  CHECK(load_config(file, {}).errors ==
        std::vector<std::string>{"verification_tokens: at least one token is required (set it in "
                                 "the file or FBR_VERIFICATION_TOKEN), unless jwt or oauth_server "
                                 "authenticates requests"});
  const LoadResult r = load_config(file, {{"FBR_VERIFICATION_TOKEN", "t1,t2"}});
  INFO(test::joined(r.errors));
  REQUIRE(r.ok());
  CHECK(r.config->verification_tokens.size() == 2);
  CHECK_FALSE(r.config->tls.enabled());
  REQUIRE(r.config->handlers.size() == 1);
  CHECK(r.config->handlers[0].type == "file");
  check_round_trip(*r.config);
}

TEST_CASE("config examples: each handler example loads") {
  for (const char* name : {"file.json", "exec.json", "http.json", "download.json", "nats.json"}) {
    CAPTURE(name);
    const LoadResult r =
        load_config(kConfigDir + "/examples/" + name, {{"FBR_VERIFICATION_TOKEN", "t1"}});
    INFO(test::joined(r.errors));
    REQUIRE(r.ok());
    CHECK_FALSE(r.config->handlers.empty());
    check_round_trip(*r.config);
  }
}

TEST_CASE("config examples: full.json shows the defaults and every handler type") {
  const LoadResult r = load_config(kConfigDir + "/examples/full.json", {});
  INFO(test::joined(r.errors));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  // Its top-level values are the defaults.
  Config defaults;
  defaults.verification_tokens = c.verification_tokens;
  defaults.handlers = c.handlers;
  CHECK(to_redacted_json(c) == to_redacted_json(defaults));
  REQUIRE(c.handlers.size() == 5);
  CHECK(c.handlers[0].type == "file");
  CHECK(c.handlers[1].type == "exec");
  CHECK(c.handlers[2].type == "http");
  CHECK(c.handlers[3].type == "download");
  CHECK(c.handlers[4].type == "nats");
  check_round_trip(c);
}

}  // namespace
}  // namespace fbr::config
