// Handlers: common keys (name, type, when, retry) and the keys of each type.
#include <doctest/doctest.h>

#include <variant>

#include "config/config.hpp"
#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::error_of;
using test::errors_of;
using test::parse_ok;
using test::with_handler;

Handler one_handler(std::string_view handler) {
  const Config c = parse_ok(with_handler(handler));
  REQUIRE(c.handlers.size() == 1);
  return c.handlers.front();
}

std::string handler_error(std::string_view handler) {
  return error_of(with_handler(handler));
}

TEST_CASE("config handlers: name and type are required") {
  const auto errors = errors_of(with_handler("{}"));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0] == "handlers[0].name: required");
  CHECK(errors[1] ==
        R"(handlers[0].type: required, one of "file", "exec", "http", "download", "nats")");
  CHECK(error_of(R"({"handlers": ["archive"]})") ==
        R"(handlers[0]: must be an object, got "archive")");
}

TEST_CASE("config handlers: names are non-empty made of letters digits _ . and - and unique") {
  CHECK(one_handler(R"({"name": "A-z_0.9", "type": "file", "dir": "d"})").name == "A-z_0.9");
  const std::string expected =
      R"(handlers[0].name: must be a non-empty name of letters, digits, '_', '.' and '-', got )";
  CHECK(handler_error(R"({"name": "", "type": "file", "dir": "d"})") == expected + R"("")");
  CHECK(handler_error(R"({"name": "has space", "type": "file", "dir": "d"})") ==
        expected + R"("has space")");
  CHECK(handler_error(R"({"name": "a/b", "type": "file", "dir": "d"})") == expected + R"("a/b")");
  CHECK(handler_error(R"({"name": 3, "type": "file", "dir": "d"})") == expected + "3");

  const auto errors = errors_of(R"({"handlers": [
    {"name": "a", "type": "file", "dir": "d"},
    {"name": "b", "type": "file", "dir": "d"},
    {"name": "a", "type": "exec", "command": ["true"]}
  ]})");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] == R"(handlers[2].name: duplicate handler name "a" (also handlers[0]))");
}

TEST_CASE("config handlers: an unknown type is reported once not with each of its keys") {
  CHECK(
      handler_error(R"({"name": "a", "type": "ftp", "dir": "d"})") ==
      R"(handlers[0].type: must be one of "file", "exec", "http", "download", "nats", got "ftp")");
  // A key no type has is still unknown.
  const auto errors = errors_of(with_handler(R"({"name": "a", "type": "ftp", "colour": 1})"));
  REQUIRE(errors.size() == 2);
  CHECK(errors[1] == "handlers[0].colour: unknown key");
  // Nor is a key of some type read as another type's: its value is not judged at all.
  CHECK(
      handler_error(R"({"name": "a", "type": "ftp", "headers": {"X": 1}, "servers": [2]})") ==
      R"(handlers[0].type: must be one of "file", "exec", "http", "download", "nats", got "ftp")");
  CHECK(handler_error(R"({"name": "a", "dir": 3, "url": 4})") ==
        R"(handlers[0].type: required, one of "file", "exec", "http", "download", "nats")");
}

TEST_CASE("config handlers: unknown keys and keys of another type name the full path") {
  CHECK(error_of(R"({"handlers": [{"name": "a", "type": "file", "dir": "d"},
                                  {"name": "b", "type": "file", "dir": "d", "colour": "red"}]})") ==
        "handlers[1].colour: unknown key");
  CHECK(handler_error(R"({"name": "a", "type": "file", "dir": "d", "url": "http://x"})") ==
        "handlers[0].url: unknown key");
  CHECK(handler_error(R"({"name": "a", "type": "exec", "command": ["x"], "headers": {}})") ==
        "handlers[0].headers: unknown key");
  CHECK(handler_error(R"({"name": "a", "type": "http", "url": "http://x", "command": ["x"]})") ==
        "handlers[0].command: unknown key");
  CHECK(handler_error(R"({"name": "a", "type": "download", "dir": "d", "path": "p"})") ==
        "handlers[0].path: unknown key");
  CHECK(handler_error(R"({"name": "a", "type": "nats", "servers": ["s"], "subject": "x",
                          "timeout_ms": 5})") == "handlers[0].timeout_ms: unknown key");
  CHECK(handler_error(R"({"name": "a", "type": "file", "dir": "d", "when": {"state": 200}})") ==
        "handlers[0].when.state: unknown key");
  CHECK(handler_error(R"({"name": "a", "type": "file", "dir": "d", "retry": {"tries": 2}})") ==
        "handlers[0].retry.tries: unknown key");
}

TEST_CASE("config handlers: when filters") {
  SUBCASE("absent: no filter") {
    const Handler h = one_handler(R"({"name": "a", "type": "file", "dir": "d"})");
    CHECK(h.when.status.empty());
    CHECK_FALSE(h.when.test.has_value());
    CHECK(h.when.resource_types.empty());
    CHECK_FALSE(h.when.source_id.has_value());
    CHECK_FALSE(h.when.destination_id.has_value());
  }
  SUBCASE("every filter") {
    const Handler h = one_handler(R"({"name": "a", "type": "file", "dir": "d", "when": {
      "status": [200, 202], "test": true, "resource_types": ["Patient", "Observation"],
      "source_id": "src-1", "destination_id": "dst-1"}})");
    CHECK(h.when.status == std::vector<int>{200, 202});
    CHECK(h.when.test == true);
    CHECK(h.when.resource_types == std::vector<std::string>{"Patient", "Observation"});
    CHECK(h.when.source_id == "src-1");
    CHECK(h.when.destination_id == "dst-1");
  }
  SUBCASE("null: no filter") {
    const Handler h = one_handler(R"({"name": "a", "type": "file", "dir": "d", "when": {
      "status": null, "test": null, "resource_types": null, "source_id": null,
      "destination_id": null}})");
    CHECK(h.when.status.empty());
    CHECK_FALSE(h.when.test.has_value());
    CHECK_FALSE(h.when.source_id.has_value());
  }
  SUBCASE("test: false is a filter") {
    CHECK(one_handler(R"({"name": "a", "type": "file", "dir": "d", "when": {"test": false}})")
              .when.test == false);
  }
}

TEST_CASE("config handlers: bad when filters") {
  const auto bad = [](std::string_view when) {
    return handler_error(R"({"name": "a", "type": "file", "dir": "d", "when": )" +
                         std::string(when) + "}");
  };
  CHECK(bad(R"({"status": [201]})") == "handlers[0].when.status[0]: must be 200 or 202, got 201");
  CHECK(bad(R"({"status": ["200"]})") ==
        R"(handlers[0].when.status[0]: must be 200 or 202, got "200")");
  CHECK(bad(R"({"status": []})") ==
        "handlers[0].when.status: must be a non-empty array of 200 and/or 202 (or null for any), "
        "got an array");
  CHECK(bad(R"({"status": 200})").starts_with("handlers[0].when.status: must be a non-empty"));
  CHECK(bad(R"({"test": "yes"})") ==
        R"(handlers[0].when.test: must be true, false (or null for either), got "yes")");
  CHECK(bad(R"({"resource_types": []})") ==
        "handlers[0].when.resource_types: must be a non-empty array of non-empty strings, got an "
        "array");
  CHECK(bad(R"({"resource_types": ["Patient", 1]})") ==
        "handlers[0].when.resource_types[1]: must be a non-empty string without control "
        "characters, got 1");
  CHECK(bad(R"({"source_id": 12})") ==
        "handlers[0].when.source_id: must be a non-empty string (or null for none), got 12");
  CHECK(
      bad(R"({"destination_id": ""})") ==
      R"(handlers[0].when.destination_id: must be a non-empty string (or null for none), got "")");
  CHECK(bad(R"([200])") == "handlers[0].when: must be an object, got an array");
}

TEST_CASE("config handlers: retry keys default to the top-level retry") {
  const Config c = parse_ok(R"({
    "retry": {"max_attempts": 5, "initial_backoff_ms": 100, "max_backoff_ms": 9000},
    "handlers": [
      {"name": "plain", "type": "file", "dir": "d"},
      {"name": "some", "type": "file", "dir": "d", "retry": {"max_attempts": 2}},
      {"name": "empty", "type": "file", "dir": "d", "retry": {}},
      {"name": "all", "type": "file", "dir": "d",
       "retry": {"max_attempts": 1, "initial_backoff_ms": 7, "max_backoff_ms": 8}}
    ]})");
  REQUIRE(c.handlers.size() == 4);
  CHECK_FALSE(c.handlers[0].retry.has_value());
  REQUIRE(c.handlers[1].retry.has_value());
  CHECK(c.handlers[1].retry->max_attempts == 2);
  CHECK(c.handlers[1].retry->initial_backoff_ms == 100);
  CHECK(c.handlers[1].retry->max_backoff_ms == 9000);
  REQUIRE(c.handlers[2].retry.has_value());
  CHECK(c.handlers[2].retry->max_attempts == 5);
  CHECK(c.handlers[3].retry->max_attempts == 1);
  CHECK(c.handlers[3].retry->initial_backoff_ms == 7);
  CHECK(c.handlers[3].retry->max_backoff_ms == 8);
}

TEST_CASE(
    "config handlers: the top-level retry is the default even when written after the handlers") {
  const Config c = parse_ok(R"({
    "handlers": [{"name": "h", "type": "file", "dir": "d", "retry": {"max_attempts": 2}}],
    "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 20}
  })");
  CHECK(c.handlers[0].retry->initial_backoff_ms == 10);
  CHECK(c.handlers[0].retry->max_backoff_ms == 20);
}

TEST_CASE("config handlers: bad retry values") {
  CHECK(
      handler_error(R"({"name": "a", "type": "file", "dir": "d", "retry": {"max_attempts": 0}})") ==
      "handlers[0].retry.max_attempts: must be a positive integer, got 0");
  CHECK(handler_error(
            R"({"name": "a", "type": "file", "dir": "d", "retry": {"initial_backoff_ms": -3}})") ==
        "handlers[0].retry.initial_backoff_ms: must be a positive integer, got -3");
  CHECK(
      handler_error(
          R"({"name": "a", "type": "file", "dir": "d", "retry": {"initial_backoff_ms": 400000}})") ==
      "handlers[0].retry.max_backoff_ms: must be at least initial_backoff_ms (400000), got "
      "300000 (inherited from retry.max_backoff_ms)");
  CHECK(handler_error(R"({"name": "a", "type": "file", "dir": "d", "retry": 3})") ==
        "handlers[0].retry: must be an object, got 3");
}

TEST_CASE("config handlers: file") {
  const Handler dir = one_handler(R"({"name": "f", "type": "file", "dir": "/srv/events"})");
  CHECK(dir.type == "file");
  REQUIRE(std::holds_alternative<FileHandler>(dir.settings));
  CHECK(std::get<FileHandler>(dir.settings).dir == "/srv/events");
  CHECK(std::get<FileHandler>(dir.settings).path.empty());
  const Handler path = one_handler(R"({"name": "f", "type": "file", "path": "/srv/e.ndjson"})");
  CHECK(std::get<FileHandler>(path.settings).path == "/srv/e.ndjson");

  const std::string one =
      "handlers[0]: a file handler needs exactly one of dir (a file per event) or path (one NDJSON "
      "file)";
  CHECK(handler_error(R"({"name": "f", "type": "file"})") == one);
  CHECK(handler_error(R"({"name": "f", "type": "file", "dir": "a", "path": "b"})") == one);
  CHECK(std::get<FileHandler>(
            one_handler(R"({"name": "f", "type": "file", "dir": null, "path": "b"})").settings)
            .dir.empty());
  // A bad dir is reported as such, not also as a missing one.
  CHECK(handler_error(R"({"name": "f", "type": "file", "dir": 5})") ==
        "handlers[0].dir: must be a non-empty string (or null for none), got 5");
}

TEST_CASE("config handlers: exec") {
  const Handler h = one_handler(
      R"({"name": "x", "type": "exec", "command": ["/bin/notify", "--flag", ""], "timeout_ms": 500})");
  REQUIRE(std::holds_alternative<ExecHandler>(h.settings));
  const auto& exec = std::get<ExecHandler>(h.settings);
  CHECK(exec.command == std::vector<std::string>{"/bin/notify", "--flag", ""});
  CHECK(exec.timeout_ms == 500);
  CHECK(std::get<ExecHandler>(
            one_handler(R"({"name": "x", "type": "exec", "command": ["a"]})").settings)
            .timeout_ms == 30'000);

  CHECK(handler_error(R"({"name": "x", "type": "exec"})") == "handlers[0].command: required");
  const std::string argv =
      "handlers[0].command: must be a non-empty array of strings (program, then arguments), got ";
  CHECK(handler_error(R"({"name": "x", "type": "exec", "command": []})") == argv + "an array");
  CHECK(handler_error(R"({"name": "x", "type": "exec", "command": "notify --all"})") ==
        argv + R"("notify --all")");
  CHECK(handler_error(R"({"name": "x", "type": "exec", "command": [""]})") ==
        R"(handlers[0].command[0]: must be a non-empty string without control characters, got "")");
  CHECK(handler_error(R"({"name": "x", "type": "exec", "command": ["a", 1]})") ==
        "handlers[0].command[1]: must be a string, got 1");
  CHECK(handler_error(R"({"name": "x", "type": "exec", "command": ["a"], "timeout_ms": 0})") ==
        "handlers[0].timeout_ms: must be a positive integer, got 0");
}

TEST_CASE("config handlers: exec env takes literals and env references like http headers") {
  const Handler h = one_handler(R"({"name": "x", "type": "exec", "command": ["a"],
    "env": {"MODE": "batch", "API_KEY": {"env": "NOTIFY_KEY"}, "EMPTY": ""}})");
  const auto& env = std::get<ExecHandler>(h.settings).env;
  REQUIRE(env.size() == 3);
  CHECK(env.at("MODE").literal == "batch");
  CHECK(env.at("MODE").env.empty());
  CHECK(env.at("API_KEY").env == "NOTIFY_KEY");
  CHECK(env.at("EMPTY").literal.empty());
  CHECK(std::get<ExecHandler>(
            one_handler(R"({"name": "x", "type": "exec", "command": ["a"]})").settings)
            .env.empty());
  const auto bad_env = [](std::string_view env) {
    return handler_error(R"({"name": "x", "type": "exec", "command": ["a"], "env": )" +
                         std::string(env) + "}");
  };
  CHECK(bad_env(R"({"1BAD": "v"})") ==
        "handlers[0].env.1BAD: not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
  CHECK(bad_env(R"({"A=B": "v"})") ==
        "handlers[0].env.A=B: not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
  // A literal may be a secret: never quoted. Line breaks are fine in a variable, NUL is not.
  CHECK(bad_env(R"({"K": 1})") ==
        R"(handlers[0].env.K: must be a string or {"env": "NAME"}, got a number)");
  CHECK(bad_env(R"({"K": "a\u0000b"})") == "handlers[0].env.K: must not contain NUL characters");
  CHECK(one_handler(R"({"name": "x", "type": "exec", "command": ["a"], "env": {"K": "a\nb"}})")
            .name == "x");
  CHECK(bad_env(R"({"K": {}})") == "handlers[0].env.K.env: required");
  CHECK(
      bad_env(R"({"K": {"env": "bad-name"}})") ==
      R"(handlers[0].env.K.env: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got "bad-name")");
  CHECK(bad_env(R"(["K=v"])") == "handlers[0].env: must be an object, got an array");
  // token_command_env on the download handler is read the same way.
  const Handler d = one_handler(R"({"name": "d", "type": "download", "dir": "/dl",
    "token_command": ["get-token"], "token_command_env": {"CLIENT_SECRET": {"env": "IDP_SECRET"}}})");
  CHECK(std::get<DownloadHandler>(d.settings).token_command_env.at("CLIENT_SECRET").env ==
        "IDP_SECRET");
  CHECK(handler_error(R"({"name": "x", "type": "file", "dir": "d", "env": {}})") ==
        "handlers[0].env: unknown key");
}

TEST_CASE("config handlers: http") {
  const Handler h = one_handler(R"({"name": "h", "type": "http",
    "url": "https://ingest.example.org:8443/in?x=1",
    "headers": {"X-Source": "fbr", "Authorization": {"env": "FORWARD_AUTH"}},
    "timeout_ms": 2500})");
  REQUIRE(std::holds_alternative<HttpHandler>(h.settings));
  const auto& http = std::get<HttpHandler>(h.settings);
  CHECK(http.url == "https://ingest.example.org:8443/in?x=1");
  REQUIRE(http.headers.size() == 2);
  CHECK(http.headers.at("X-Source").literal == "fbr");
  CHECK(http.headers.at("X-Source").env.empty());
  CHECK(http.headers.at("Authorization").env == "FORWARD_AUTH");
  CHECK(http.headers.at("Authorization").literal.empty());
  CHECK(http.timeout_ms == 2500);
  CHECK(std::get<HttpHandler>(
            one_handler(R"({"name": "h", "type": "http", "url": "HTTP://[::1]/"})").settings)
            .timeout_ms == 10'000);

  CHECK(handler_error(R"({"name": "h", "type": "http"})") == "handlers[0].url: required");
  for (const char* url :
       {R"("ftp://x/")", R"("http://")", R"("http:///path")", R"("/relative")", R"("http://a b/")",
        R"("")", "42", R"("http://h:abc/")", R"("http://[::1/")", R"("https://h:80x")"}) {
    CAPTURE(url);
    CHECK(handler_error(std::string(R"({"name": "h", "type": "http", "url": )") + url + "}") ==
          std::string("handlers[0].url: must be an absolute http:// or https:// URL, got ") + url);
  }
  const auto bad_header = [](std::string_view headers) {
    return handler_error(R"({"name": "h", "type": "http", "url": "http://x/", "headers": )" +
                         std::string(headers) + "}");
  };
  // A literal header value may be a secret: never quoted.
  CHECK(bad_header(R"({"X-Key": 12345})") ==
        R"(handlers[0].headers.X-Key: must be a string or {"env": "NAME"}, got a number)");
  CHECK(bad_header(R"({"X-Key": "a\r\nX-Evil: 1"})") ==
        "handlers[0].headers.X-Key: must not contain line breaks or NUL characters");
  CHECK(bad_header(R"({"Bad Name": "v"})") ==
        "handlers[0].headers.Bad Name: not a valid HTTP header name");
  CHECK(bad_header(R"({"X-A": "1", "x-a": "2"})") ==
        "handlers[0].headers.x-a: same header as handlers[0].headers.X-A (names are "
        "case-insensitive)");
  CHECK(bad_header(R"({"X-Key": {}})") == "handlers[0].headers.X-Key.env: required");
  CHECK(
      bad_header(R"({"X-Key": {"env": "1BAD"}})") ==
      R"(handlers[0].headers.X-Key.env: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got "1BAD")");
  CHECK(bad_header(R"({"X-Key": {"env": "OK", "default": "x"}})") ==
        "handlers[0].headers.X-Key.default: unknown key");
  CHECK(bad_header(R"(["X-Key: v"])") == "handlers[0].headers: must be an object, got an array");
  CHECK(handler_error(R"({"name": "h", "type": "http", "url": "http://x/", "timeout_ms": 1.5})") ==
        "handlers[0].timeout_ms: must be a positive integer, got 1.5");
}

TEST_CASE("config handlers: download") {
  const Handler h = one_handler(R"({"name": "d", "type": "download", "dir": "/srv/dl"})");
  REQUIRE(std::holds_alternative<DownloadHandler>(h.settings));
  const auto& defaults = std::get<DownloadHandler>(h.settings);
  CHECK(defaults.dir == "/srv/dl");
  CHECK(defaults.parallel == 4);
  CHECK(defaults.token_env.empty());
  CHECK(defaults.token_file.empty());
  CHECK(defaults.token_command.empty());
  CHECK(defaults.store == "ndjson");
  CHECK(defaults.connect_timeout_ms == 10000);
  CHECK(defaults.idle_timeout_ms == 60000);
  CHECK(defaults.transfer_attempts == 5);
  CHECK(defaults.max_retry_wait_ms == 30000);

  const auto settings = [](std::string_view extra) {
    return std::get<DownloadHandler>(
        one_handler(R"({"name": "d", "type": "download", "dir": "x", )" + std::string(extra) + "}")
            .settings);
  };
  CHECK(settings(R"("parallel": 64, "store": "gzip")").parallel == 64);
  CHECK(settings(R"("store": "gzip")").store == "gzip");
  CHECK(settings(R"("token_env": "FHIR_TOKEN")").token_env == "FHIR_TOKEN");
  CHECK(settings(R"("token_file": "/run/secrets/t")").token_file == "/run/secrets/t");
  CHECK(settings(R"("token_command": ["get-token", "--fhir"])").token_command ==
        std::vector<std::string>{"get-token", "--fhir"});
  CHECK(settings(R"("token_env": null, "token_file": null, "token_command": null)")
            .token_env.empty());
  const auto tuned = settings(R"("connect_timeout_ms": 250, "idle_timeout_ms": 1500,
                                 "transfer_attempts": 1, "max_retry_wait_ms": 0)");
  CHECK(tuned.connect_timeout_ms == 250);
  CHECK(tuned.idle_timeout_ms == 1500);
  CHECK(tuned.transfer_attempts == 1);
  CHECK(tuned.max_retry_wait_ms == 0);  // 0: never wait in-process, leave it to retry
  CHECK(settings(R"("transfer_attempts": 100)").transfer_attempts == 100);

  const auto bad = [](std::string_view extra) {
    return handler_error(R"({"name": "d", "type": "download", "dir": "x", )" + std::string(extra) +
                         "}");
  };
  CHECK(handler_error(R"({"name": "d", "type": "download"})") == "handlers[0].dir: required");
  CHECK(bad(R"("parallel": 0)") == "handlers[0].parallel: must be an integer from 1 to 64, got 0");
  CHECK(bad(R"("parallel": 65)") ==
        "handlers[0].parallel: must be an integer from 1 to 64, got 65");
  CHECK(bad(R"("store": "zip")") ==
        R"(handlers[0].store: must be one of "ndjson", "gzip", got "zip")");
  CHECK(
      bad(R"("token_env": "has-dash")") ==
      R"(handlers[0].token_env: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got "has-dash")");
  CHECK(bad(R"("token_file": "")") ==
        R"(handlers[0].token_file: must be a non-empty string (or null for none), got "")");
  CHECK(
      bad(R"("token_command": "get-token")") ==
      R"(handlers[0].token_command: must be a non-empty array of strings (program, then arguments), got "get-token")");
  CHECK(bad(R"("connect_timeout_ms": 0)") ==
        "handlers[0].connect_timeout_ms: must be a positive integer, got 0");
  CHECK(bad(R"("idle_timeout_ms": "60s")") ==
        R"(handlers[0].idle_timeout_ms: must be a positive integer, got "60s")");
  CHECK(bad(R"("transfer_attempts": 0)") ==
        "handlers[0].transfer_attempts: must be an integer from 1 to 100, got 0");
  CHECK(bad(R"("transfer_attempts": 101)") ==
        "handlers[0].transfer_attempts: must be an integer from 1 to 100, got 101");
  CHECK(bad(R"("max_retry_wait_ms": -1)") ==
        "handlers[0].max_retry_wait_ms: must be an integer from 0 to 4294967295, got -1");
  // The new keys belong to download only.
  CHECK(
      handler_error(R"({"name": "h", "type": "http", "url": "http://x/", "idle_timeout_ms": 5})") ==
      "handlers[0].idle_timeout_ms: unknown key");
  CHECK(bad(R"("idle_timeout": 5)") == "handlers[0].idle_timeout: unknown key");
  const std::string at_most_one =
      "handlers[0]: at most one of token_env, token_file, token_command may be set";
  CHECK(bad(R"("token_env": "A", "token_file": "f")") == at_most_one);
  CHECK(bad(R"("token_file": "f", "token_command": ["c"])") == at_most_one);
  CHECK(bad(R"("token_env": "A", "token_command": ["c"])") == at_most_one);
}

TEST_CASE("config handlers: nats") {
  const Handler h = one_handler(R"({"name": "n", "type": "nats",
    "servers": ["nats://a:4222"], "subject": "fhir.events", "stream": "FHIR",
    "credentials_file": "/etc/nats.creds"})");
  REQUIRE(std::holds_alternative<NatsHandler>(h.settings));
  const auto& nats = std::get<NatsHandler>(h.settings);
  CHECK(nats.servers == std::vector<std::string>{"nats://a:4222"});
  CHECK(nats.subject == "fhir.events");
  CHECK(nats.stream == "FHIR");
  CHECK(nats.credentials_file == "/etc/nats.creds");

  const auto errors = errors_of(with_handler(R"({"name": "n", "type": "nats"})"));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0] == "handlers[0].servers: required");
  CHECK(errors[1] == "handlers[0].subject: required");
  CHECK(handler_error(R"({"name": "n", "type": "nats", "servers": [], "subject": "s"})") ==
        "handlers[0].servers: must be a non-empty array of non-empty strings, got an array");
  CHECK(handler_error(R"({"name": "n", "type": "nats", "servers": ["a"], "subject": ""})") ==
        R"(handlers[0].subject: must be a non-empty string without control characters, got "")");
  CHECK(handler_error(
            R"({"name": "n", "type": "nats", "servers": ["a"], "subject": "s", "stream": 1})") ==
        "handlers[0].stream: must be a non-empty string (or null for none), got 1");
}

TEST_CASE("config handlers: errors of several handlers are all reported") {
  const auto errors = errors_of(R"({"handlers": [
    {"name": "a", "type": "exec"},
    {"name": "b", "type": "http", "url": "nope"},
    {"name": "c", "type": "download", "dir": "x", "parallel": 100}
  ]})");
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].starts_with("handlers[0].command: "));
  CHECK(errors[1].starts_with("handlers[1].url: "));
  CHECK(errors[2].starts_with("handlers[2].parallel: "));
}

}  // namespace
}  // namespace fbr::config
