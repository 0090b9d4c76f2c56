// The file format: defaults, every top-level key, bad values, unknown keys, JSON syntax.
#include <doctest/doctest.h>

#include "config/config.hpp"
#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::error_of;
using test::errors_of;
using test::parse;
using test::parse_ok;

TEST_CASE("config: an empty object gives the safe defaults (plus the required token)") {
  const Config c = parse_ok("{}");
  CHECK(c.listen.host == "127.0.0.1");
  CHECK(c.listen.port == 8080);
  CHECK(c.path == "/webhook");
  CHECK(c.verification_tokens == std::vector<std::string>{"env-token"});
  CHECK(c.data_dir == "./data");
  CHECK(c.max_body_bytes == 41'943'040);
  CHECK(c.invalid_payloads == InvalidPayloads::kReject);
  CHECK_FALSE(c.tls.enabled());
  CHECK(c.tls.key_file.empty());
  CHECK(c.log.level == "info");
  CHECK(c.log.format == LogFormat::kText);
  CHECK(c.retry.max_attempts == 10);
  CHECK(c.retry.initial_backoff_ms == 1000);
  CHECK(c.retry.max_backoff_ms == 300000);
  CHECK(c.journal.backend == "sqlite");
  CHECK(c.journal.nats.servers.empty());
  CHECK(c.journal.nats.stream == "FBR_EVENTS");
  CHECK(c.journal.nats.subject == "fbr.events");
  CHECK(c.journal.nats.replicas == 1);
  CHECK(c.journal.nats.credentials_file.empty());
  CHECK(c.dispatch_concurrency == 8);
  CHECK(c.limits.max_header_bytes == 16 * 1024);
  CHECK(c.limits.header_timeout_ms == 10'000);
  CHECK(c.limits.body_timeout_ms == 60'000);
  CHECK(c.limits.idle_timeout_ms == 60'000);
  CHECK(c.limits.max_connections == 10'000);
  CHECK(c.limits.max_unauthenticated_body_bytes == 4096);
  CHECK(c.handlers.empty());
  CHECK(c.source_file.empty());
}

TEST_CASE("config: every top-level key is read") {
  const Config c = parse_ok(R"({
    "listen": "0.0.0.0:9090",
    "path": "/redox/events",
    "verification_tokens": ["one", "two"],
    "data_dir": "/var/lib/fbr",
    "max_body_bytes": 1048576,
    "invalid_payloads": "quarantine",
    "tls": {"cert_file": "/etc/fbr/cert.pem", "key_file": "/etc/fbr/key.pem"},
    "log": {"level": "debug", "format": "json"},
    "retry": {"max_attempts": 3, "initial_backoff_ms": 50, "max_backoff_ms": 5000},
    "journal": {"backend": "nats", "nats": {"servers": ["nats://a:4222", "nats://b:4222"],
                "stream": "S", "subject": "s.events", "replicas": 3,
                "credentials_file": "/etc/fbr/nats.creds"}},
    "dispatch": {"concurrency": 32},
    "limits": {"max_header_bytes": 8192, "header_timeout_ms": 5000, "body_timeout_ms": 30000,
               "idle_timeout_ms": 15000, "max_connections": 500},
    "handlers": []
  })",
                            {});
  CHECK(c.listen.host == "0.0.0.0");
  CHECK(c.listen.port == 9090);
  CHECK(c.path == "/redox/events");
  CHECK(c.verification_tokens == std::vector<std::string>{"one", "two"});
  CHECK(c.data_dir == "/var/lib/fbr");
  CHECK(c.max_body_bytes == 1048576);
  CHECK(c.invalid_payloads == InvalidPayloads::kQuarantine);
  CHECK(c.tls.enabled());
  CHECK(c.tls.cert_file == "/etc/fbr/cert.pem");
  CHECK(c.tls.key_file == "/etc/fbr/key.pem");
  CHECK(c.log.level == "debug");
  CHECK(c.log.format == LogFormat::kJson);
  CHECK(c.retry.max_attempts == 3);
  CHECK(c.retry.initial_backoff_ms == 50);
  CHECK(c.retry.max_backoff_ms == 5000);
  CHECK(c.journal.backend == "nats");
  CHECK(c.journal.nats.servers == std::vector<std::string>{"nats://a:4222", "nats://b:4222"});
  CHECK(c.journal.nats.stream == "S");
  CHECK(c.journal.nats.subject == "s.events");
  CHECK(c.journal.nats.replicas == 3);
  CHECK(c.journal.nats.credentials_file == "/etc/fbr/nats.creds");
  CHECK(c.dispatch_concurrency == 32);
  CHECK(c.limits.max_header_bytes == 8192);
  CHECK(c.limits.header_timeout_ms == 5000);
  CHECK(c.limits.body_timeout_ms == 30000);
  CHECK(c.limits.idle_timeout_ms == 15000);
  CHECK(c.limits.max_connections == 500);
}

TEST_CASE("config: listen forms") {
  SUBCASE("IPv6 in brackets") {
    const Config c = parse_ok(R"({"listen": "[::]:8443"})");
    CHECK(c.listen.host == "::");
    CHECK(c.listen.port == 8443);
  }
  SUBCASE("IPv6 loopback") {
    const Config c = parse_ok(R"({"listen": "[::1]:80"})");
    CHECK(c.listen.host == "::1");
  }
  SUBCASE("a host name") {
    const Config c = parse_ok(R"({"listen": "localhost:65535"})");
    CHECK(c.listen.host == "localhost");
    CHECK(c.listen.port == 65535);
  }
  SUBCASE("port 0 picks any free port") {
    CHECK(parse_ok(R"({"listen": "127.0.0.1:0"})").listen.port == 0);
  }
}

TEST_CASE("config: bad listen values name the key") {
  const std::string expected =
      R"(must be "host:port" (IPv6 as "[::]:8080") with a port from 0 to 65535, got )";
  for (const char* bad : {R"("8080")", R"(":8080")", R"("localhost:")", R"("host:65536")",
                          R"("host:http")", R"("::1:8080")", R"("[::1]8080")", R"("[]:80")",
                          R"("host:-1")", R"("host:123456")", "8080", "null"}) {
    CAPTURE(bad);
    const std::string error = error_of(std::string(R"({"listen": )") + bad + "}");
    CHECK(error == "listen: " + expected + bad);
  }
}

TEST_CASE("config: path must be a URL path and not a built-in route") {
  CHECK(parse_ok(R"({"path": "/"})").path == "/");
  CHECK(
      error_of(R"({"path": "webhook"})") ==
      R"(path: must be a URL path starting with "/" (no query, fragment or whitespace), got "webhook")");
  CHECK(error_of(R"({"path": "/a b"})").starts_with("path: must be a URL path"));
  CHECK(error_of(R"({"path": "/a?b=1"})").starts_with("path: must be a URL path"));
  CHECK(error_of(R"({"path": 5})").starts_with("path: must be a URL path"));
  CHECK(error_of(R"({"path": "/healthz"})") ==
        R"(path: must not be a built-in route (/healthz, /readyz, /metrics), got "/healthz")");
  CHECK(error_of(R"({"path": "/metrics"})").starts_with("path: must not be a built-in route"));
}

TEST_CASE("config: verification_tokens") {
  CHECK(parse_ok(R"({"verification_tokens": ["a", "b", "c"]})", {}).verification_tokens.size() ==
        3);
  // Messages never quote a token: it may be the secret itself, misplaced.
  CHECK(error_of(R"({"verification_tokens": "s3cret"})") ==
        "verification_tokens: must be an array of token strings, got a string");
  CHECK(error_of(R"({"verification_tokens": ["ok", 7]})") ==
        "verification_tokens[1]: must be a non-empty string, got a number");
  CHECK(error_of(R"({"verification_tokens": [""]})") ==
        "verification_tokens[0]: must not be empty");
  CHECK(error_of(R"({"verification_tokens": [" s3cret"]})") ==
        "verification_tokens[0]: must not have leading or trailing whitespace");
  CHECK(error_of(R"({"verification_tokens": ["s3\tcret"]})") ==
        "verification_tokens[0]: must not contain control characters");
}

TEST_CASE("config: a token is required from the file or the environment") {
  const std::string missing =
      "verification_tokens: at least one token is required (set it in the file or "
      "FBR_VERIFICATION_TOKEN), unless jwt or oauth_server authenticates requests";
  CHECK(error_of("{}", {}) == missing);
  CHECK(error_of(R"({"verification_tokens": []})", {}) == missing);
  CHECK(error_of("{}", {{"FBR_VERIFICATION_TOKEN", " , ,"}}) == missing);
  // Not repeated when the tokens given are already reported as bad.
  CHECK(error_of(R"({"verification_tokens": [""]})", {}) ==
        "verification_tokens[0]: must not be empty");
  CHECK(error_of(R"({"verification_tokens": "t"})", {}) ==
        "verification_tokens: must be an array of token strings, got a string");
  // Reported alongside the other errors, not instead of them.
  const auto errors = errors_of(R"({"listen": "x"})", {});
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].starts_with("listen: "));
  CHECK(errors[1] == missing);
}

TEST_CASE("config: bad scalar values name the key the expectation and the value") {
  CHECK(error_of(R"({"max_body_bytes": "ten"})") ==
        R"(max_body_bytes: must be a positive integer, got "ten")");
  CHECK(error_of(R"({"max_body_bytes": 0})") ==
        "max_body_bytes: must be a positive integer, got 0");
  CHECK(error_of(R"({"max_body_bytes": -1})") ==
        "max_body_bytes: must be a positive integer, got -1");
  CHECK(error_of(R"({"max_body_bytes": 1.5})") ==
        "max_body_bytes: must be a positive integer, got 1.5");
  CHECK(error_of(R"({"data_dir": ""})") ==
        R"(data_dir: must be a non-empty string without control characters, got "")");
  CHECK(error_of(R"({"data_dir": ["a"]})") ==
        "data_dir: must be a non-empty string without control characters, got an array");
  CHECK(error_of(R"({"invalid_payloads": "drop"})") ==
        R"(invalid_payloads: must be one of "reject", "quarantine", got "drop")");
  CHECK(
      error_of(R"({"log": {"level": "verbose"}})") ==
      R"(log.level: must be one of "trace", "debug", "info", "warn", "error", "critical", "off", got "verbose")");
  CHECK(error_of(R"({"log": {"format": "xml"}})") ==
        R"(log.format: must be one of "text", "json", got "xml")");
  CHECK(error_of(R"({"log": "debug"})") == R"(log: must be an object, got "debug")");
  CHECK(error_of(R"({"tls": {"cert_file": ""}})") ==
        R"(tls.cert_file: must be a non-empty string (or null for none), got "")");
  CHECK(error_of(R"({"dispatch": {"concurrency": 0}})") ==
        "dispatch.concurrency: must be an integer from 1 to 1024, got 0");
  CHECK(error_of(R"({"dispatch": {"concurrency": 1025}})") ==
        "dispatch.concurrency: must be an integer from 1 to 1024, got 1025");
  CHECK(error_of(R"({"handlers": {}})") ==
        "handlers: must be an array of handler objects, got an object");
}

TEST_CASE("config: every log level is accepted") {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    CAPTURE(level);
    CHECK(parse_ok(std::string(R"({"log": {"level": ")") + level + R"("}})").log.level == level);
  }
}

TEST_CASE("config: limits are positive 32-bit integers") {
  for (const char* key : {"max_header_bytes", "header_timeout_ms", "body_timeout_ms",
                          "idle_timeout_ms", "max_connections"}) {
    CAPTURE(key);
    const std::string k = key;
    CHECK(error_of(R"({"limits": {")" + k + R"(": 0}})") ==
          "limits." + k + ": must be a positive integer, got 0");
    CHECK(error_of(R"({"limits": {")" + k + R"(": "1"}})") ==
          "limits." + k + R"(: must be a positive integer, got "1")");
    CHECK(error_of(R"({"limits": {")" + k + R"(": 4294967296}})") ==
          "limits." + k + ": must be a positive integer no larger than 4294967295, got 4294967296");
  }
  CHECK(parse_ok(R"({"limits": {"max_connections": 4294967295}})").limits.max_connections ==
        4294967295u);
}

TEST_CASE("config: limits.max_unauthenticated_body_bytes is from 512 to 1048576") {
  CHECK(parse_ok(R"({"limits": {"max_unauthenticated_body_bytes": 512}})")
            .limits.max_unauthenticated_body_bytes == 512);
  CHECK(parse_ok(R"({"limits": {"max_unauthenticated_body_bytes": 1048576}})")
            .limits.max_unauthenticated_body_bytes == 1048576);
  CHECK(error_of(R"({"limits": {"max_unauthenticated_body_bytes": 511}})") ==
        "limits.max_unauthenticated_body_bytes: must be an integer from 512 to 1048576, got 511");
  CHECK(error_of(R"({"limits": {"max_unauthenticated_body_bytes": 1048577}})") ==
        "limits.max_unauthenticated_body_bytes: must be an integer from 512 to 1048576, got "
        "1048577");
}

TEST_CASE("config: retry bounds") {
  CHECK(error_of(R"({"retry": {"max_attempts": 0}})") ==
        "retry.max_attempts: must be a positive integer, got 0");
  CHECK(error_of(R"({"retry": {"initial_backoff_ms": 0}})") ==
        "retry.initial_backoff_ms: must be a positive integer, got 0");
  CHECK(error_of(R"({"retry": {"max_backoff_ms": "1s"}})") ==
        R"(retry.max_backoff_ms: must be a positive integer, got "1s")");
  CHECK(error_of(R"({"retry": {"initial_backoff_ms": 5000, "max_backoff_ms": 1000}})") ==
        "retry.max_backoff_ms: must be at least initial_backoff_ms (5000), got 1000");
  // Equal is fine: a constant delay.
  CHECK(parse_ok(R"({"retry": {"initial_backoff_ms": 500, "max_backoff_ms": 500}})")
            .retry.max_backoff_ms == 500);
  // Only the initial given, above the default maximum.
  CHECK(error_of(R"({"retry": {"initial_backoff_ms": 400000}})") ==
        "retry.max_backoff_ms: must be at least initial_backoff_ms (400000), got 300000");
}

TEST_CASE("config: tls needs both files") {
  const std::string both =
      "tls: cert_file and key_file must be set together (or FBR_TLS_CERT_FILE and "
      "FBR_TLS_KEY_FILE)";
  CHECK(error_of(R"({"tls": {"cert_file": "c.pem"}})") == both);
  CHECK(error_of(R"({"tls": {"key_file": "k.pem"}})") == both);
  CHECK_FALSE(parse_ok(R"({"tls": {"cert_file": null, "key_file": null}})").tls.enabled());
}

TEST_CASE("config: journal") {
  CHECK(error_of(R"({"journal": {"backend": "postgres"}})") ==
        R"(journal.backend: must be one of "sqlite", "nats", got "postgres")");
  CHECK(
      error_of(R"({"journal": {"backend": "nats"}})") ==
      R"(journal.nats.servers: at least one server is required when journal.backend is "nats" (or FBR_JOURNAL_NATS_SERVERS))");
  CHECK(
      error_of(R"({"journal": {"nats": {"servers": [""]}}})") ==
      R"(journal.nats.servers[0]: must be a non-empty string without control characters, got "")");
  CHECK(error_of(R"({"journal": {"nats": {"servers": "nats://a"}}})") ==
        R"(journal.nats.servers: must be an array of non-empty strings, got "nats://a")");
  CHECK(error_of(R"({"journal": {"nats": {"replicas": 0}}})") ==
        "journal.nats.replicas: must be an integer from 1 to 5, got 0");
  CHECK(error_of(R"({"journal": {"nats": {"replicas": 7}}})") ==
        "journal.nats.replicas: must be an integer from 1 to 5, got 7");
  CHECK(
      error_of(R"({"journal": {"nats": {"stream": ""}}})") ==
      R"(journal.nats.stream: must be a JetStream stream name (no whitespace, '.', '*', '>', '/' or '\'), got "")");
  CHECK(error_of(R"({"journal": {"nats": {"subject": 1}}})") ==
        "journal.nats.subject: must be a NATS subject without wildcards (tokens separated by '.', "
        "no whitespace, '*' or '>'), got 1");
  // nats settings may sit there while the backend is sqlite.
  CHECK(parse_ok(R"({"journal": {"nats": {"servers": ["nats://a:4222"]}}})").journal.backend ==
        "sqlite");
}

TEST_CASE("config: unknown keys are errors naming the full key path") {
  CHECK(error_of(R"({"listne": "127.0.0.1:80"})") == "listne: unknown key");
  CHECK(error_of(R"({"tls": {"cert": "c.pem"}})") == "tls.cert: unknown key");
  CHECK(error_of(R"({"log": {"colour": true}})") == "log.colour: unknown key");
  CHECK(error_of(R"({"retry": {"attempts": 3}})") == "retry.attempts: unknown key");
  CHECK(error_of(R"({"journal": {"nats": {"server": []}}})") == "journal.nats.server: unknown key");
  CHECK(error_of(R"({"dispatch": {"workers": 3}})") == "dispatch.workers: unknown key");
  CHECK(error_of(R"({"limits": {"max_body_bytes": 3}})") == "limits.max_body_bytes: unknown key");
}

TEST_CASE("config: a key given twice is an error") {
  CHECK(error_of(R"({"path": "/a", "path": "/b"})") == "path: duplicate key");
  CHECK(error_of(R"({"log": {"level": "info", "level": "debug"}})") == "log.level: duplicate key");
}

TEST_CASE("config: every error is collected in document order") {
  const auto errors = errors_of(R"({
    "listen": "nope",
    "max_body_bytes": "ten",
    "colour": "blue",
    "log": {"level": "loud", "format": "xml"},
    "handlers": [{"name": "a", "type": "file", "dir": "/x", "colour": 1}]
  })");
  REQUIRE(errors.size() == 6);
  CHECK(errors[0].starts_with("listen: "));
  CHECK(errors[1].starts_with("max_body_bytes: "));
  CHECK(errors[2] == "colour: unknown key");
  CHECK(errors[3].starts_with("log.level: "));
  CHECK(errors[4].starts_with("log.format: "));
  CHECK(errors[5] == "handlers[0].colour: unknown key");
}

TEST_CASE("config: comments and trailing commas are allowed") {
  const Config c = parse_ok(R"(
    // line comment
    {
      /* block
         comment */
      "listen": "127.0.0.1:9000", // after a value
      "verification_tokens": ["a", "b",],
      "log": {"level": "warn",},
    }
    // trailing comment
  )",
                            {});
  CHECK(c.listen.port == 9000);
  CHECK(c.verification_tokens.size() == 2);
  CHECK(c.log.level == "warn");
}

TEST_CASE("config: a syntax error names the origin line column and offset") {
  const LoadResult r =
      parse_config("{\n  \"listen\": \"a:1\"\n  \"path\": \"/x\"\n}", {}, "my.json");
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] ==
        "my.json:3:3: invalid JSON: Missing a comma or '}' after an object member (offset 22)");
  CHECK(parse_config("", {}, "empty.json").errors.at(0) ==
        "empty.json:1:1: invalid JSON: The document is empty (offset 0)");
  CHECK(parse_config("{} {}", {}, "x.json").errors.at(0).starts_with("x.json:1:4: invalid JSON: "));
  // Invalid UTF-8 is a syntax error too.
  CHECK(
      parse_config("{\"data_dir\": \"\xff\"}", {}, "u.json").errors.at(0).starts_with("u.json:1:"));
}

TEST_CASE("config: the root must be an object") {
  CHECK(
      parse("[]").errors ==
      std::vector<std::string>{"test.json: the configuration must be a JSON object, got an array"});
  CHECK(parse(R"("s3cret")").errors.at(0) ==
        "test.json: the configuration must be a JSON object, got a string");
}

}  // namespace
}  // namespace fbr::config
