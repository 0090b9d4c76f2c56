// FBR_* environment overrides, FBR_CONFIG, load_config and process_environment.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.hpp"
#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::error_of;
using test::errors_of;
using test::parse_ok;

/// A file in a fresh temp directory, removed with it at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    dir_ = std::filesystem::temp_directory_path() /
           ("fbr-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
    path_ = dir_ / "config.json";
    std::ofstream(path_) << content;
  }
  ~TempFile() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
  std::filesystem::path path_;
};

TEST_CASE(
    "config env: the token comes from FBR_VERIFICATION_TOKEN, comma-separated, blanks dropped") {
  CHECK(parse_ok("{}", {{"FBR_VERIFICATION_TOKEN", "abc"}}).verification_tokens ==
        std::vector<std::string>{"abc"});
  CHECK(parse_ok("{}", {{"FBR_VERIFICATION_TOKEN", " new , old ,, "}}).verification_tokens ==
        std::vector<std::string>{"new", "old"});
  // The variable replaces the file's tokens.
  CHECK(parse_ok(R"({"verification_tokens": ["file"]})", {{"FBR_VERIFICATION_TOKEN", "env"}})
            .verification_tokens == std::vector<std::string>{"env"});
  // Empty counts as unset: the file's tokens stay.
  CHECK(parse_ok(R"({"verification_tokens": ["file"]})", {{"FBR_VERIFICATION_TOKEN", ""}})
            .verification_tokens == std::vector<std::string>{"file"});
  // A bad token is reported without its text.
  const std::string error = error_of("{}", {{"FBR_VERIFICATION_TOKEN", "ok,s3\x01cret"}});
  CHECK(error == "FBR_VERIFICATION_TOKEN: a token must not contain control characters");
}

TEST_CASE("config env: each override replaces the file's value") {
  const std::string file = R"({
    "listen": "127.0.0.1:1", "path": "/file", "verification_tokens": ["t"], "data_dir": "/file",
    "max_body_bytes": 1, "invalid_payloads": "reject", "log": {"level": "error", "format": "text"},
    "journal": {"backend": "sqlite", "nats": {"servers": ["nats://n:4222"]}}
  })";
  const Config c = parse_ok(file, {{"FBR_LISTEN", "[::]:9443"},
                                   {"FBR_PATH", "/env"},
                                   {"FBR_DATA_DIR", "/env/data"},
                                   {"FBR_MAX_BODY_BYTES", "2048"},
                                   {"FBR_INVALID_PAYLOADS", "quarantine"},
                                   {"FBR_TLS_CERT_FILE", "/env/cert.pem"},
                                   {"FBR_TLS_KEY_FILE", "/env/key.pem"},
                                   {"FBR_LOG_LEVEL", "trace"},
                                   {"FBR_LOG_FORMAT", "json"},
                                   {"FBR_JOURNAL_BACKEND", "nats"}});
  CHECK(c.listen.host == "::");
  CHECK(c.listen.port == 9443);
  CHECK(c.path == "/env");
  CHECK(c.data_dir == "/env/data");
  CHECK(c.max_body_bytes == 2048);
  CHECK(c.invalid_payloads == InvalidPayloads::kQuarantine);
  CHECK(c.tls.cert_file == "/env/cert.pem");
  CHECK(c.tls.key_file == "/env/key.pem");
  CHECK(c.log.level == "trace");
  CHECK(c.log.format == LogFormat::kJson);
  CHECK(c.journal.backend == "nats");
}

TEST_CASE("config env: values are trimmed and empty values count as unset") {
  const Config c = parse_ok("{}", {{"FBR_VERIFICATION_TOKEN", "t"},
                                   {"FBR_LISTEN", " 0.0.0.0:81 "},
                                   {"FBR_PATH", ""},
                                   {"FBR_LOG_LEVEL", "  "}});
  CHECK(c.listen.host == "0.0.0.0");
  CHECK(c.listen.port == 81);
  CHECK(c.path == "/webhook");
  CHECK(c.log.level == "info");
  // Each override alone, on the defaults.
  CHECK(parse_ok("{}", {{"FBR_VERIFICATION_TOKEN", "t"}, {"FBR_INVALID_PAYLOADS", "reject"}})
            .invalid_payloads == InvalidPayloads::kReject);
  CHECK(parse_ok("{}", {{"FBR_VERIFICATION_TOKEN", "t"}, {"FBR_LOG_FORMAT", "text"}}).log.format ==
        LogFormat::kText);
  CHECK(parse_ok("{}", {{"FBR_VERIFICATION_TOKEN", "t"}, {"FBR_JOURNAL_BACKEND", "sqlite"}})
            .journal.backend == "sqlite");
}

TEST_CASE("config env: an invalid value is an error naming the variable") {
  const auto bad = [](const char* name, const char* value) {
    return error_of("{}", {{"FBR_VERIFICATION_TOKEN", "t"}, {name, value}});
  };
  CHECK(
      bad("FBR_LISTEN", "8080") ==
      R"(FBR_LISTEN: must be "host:port" (IPv6 as "[::]:8080") with a port from 0 to 65535, got "8080")");
  CHECK(bad("FBR_LISTEN", "::1:80").starts_with("FBR_LISTEN: must be "));
  CHECK(
      bad("FBR_PATH", "webhook") ==
      R"(FBR_PATH: must be a URL path starting with "/" (no query, fragment or whitespace), got "webhook")");
  CHECK(bad("FBR_PATH", "/readyz") ==
        R"(FBR_PATH: must not be a built-in route (/healthz, /readyz, /metrics), got "/readyz")");
  CHECK(bad("FBR_MAX_BODY_BYTES", "ten") ==
        R"(FBR_MAX_BODY_BYTES: must be a positive integer, got "ten")");
  CHECK(bad("FBR_MAX_BODY_BYTES", "0") ==
        R"(FBR_MAX_BODY_BYTES: must be a positive integer, got "0")");
  CHECK(bad("FBR_MAX_BODY_BYTES", "-5").starts_with("FBR_MAX_BODY_BYTES: "));
  CHECK(bad("FBR_MAX_BODY_BYTES", "10MB").starts_with("FBR_MAX_BODY_BYTES: "));
  CHECK(bad("FBR_MAX_BODY_BYTES", "99999999999999999999").starts_with("FBR_MAX_BODY_BYTES: "));
  CHECK(bad("FBR_INVALID_PAYLOADS", "drop") ==
        R"(FBR_INVALID_PAYLOADS: must be "reject" or "quarantine", got "drop")");
  CHECK(
      bad("FBR_LOG_LEVEL", "loud") ==
      R"(FBR_LOG_LEVEL: must be one of "trace", "debug", "info", "warn", "error", "critical", "off", got "loud")");
  CHECK(bad("FBR_LOG_FORMAT", "xml") == R"(FBR_LOG_FORMAT: must be "text" or "json", got "xml")");
  CHECK(bad("FBR_JOURNAL_BACKEND", "kafka") ==
        R"(FBR_JOURNAL_BACKEND: must be "sqlite" or "nats", got "kafka")");
  CHECK(bad("FBR_DATA_DIR",
            "a\x01"
            "b") == R"(FBR_DATA_DIR: must be a value without control characters, got "a\u0001b")");
  CHECK(bad("FBR_TLS_CERT_FILE", "c\x02") ==
        R"(FBR_TLS_CERT_FILE: must be a value without control characters, got "c\u0002")");
  CHECK(bad("FBR_TLS_KEY_FILE", "k\x02").starts_with("FBR_TLS_KEY_FILE: "));
}

TEST_CASE("config env: rules spanning keys are checked after the overrides") {
  // The file has one TLS file, the environment the other: valid together.
  CHECK(parse_ok(R"({"tls": {"cert_file": "c.pem"}})",
                 {{"FBR_VERIFICATION_TOKEN", "t"}, {"FBR_TLS_KEY_FILE", "k.pem"}})
            .tls.enabled());
  CHECK(error_of("{}", {{"FBR_VERIFICATION_TOKEN", "t"}, {"FBR_TLS_CERT_FILE", "c.pem"}})
            .starts_with("tls: cert_file and key_file must be set together"));
  CHECK(error_of("{}", {{"FBR_VERIFICATION_TOKEN", "t"}, {"FBR_JOURNAL_BACKEND", "nats"}})
            .starts_with("journal.nats.servers: at least one server is required"));
}

TEST_CASE("config env: file errors and environment errors are reported together") {
  const auto errors = errors_of(R"({"path": "x"})", {{"FBR_LISTEN", "nope"}});
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].starts_with("path: "));
  CHECK(errors[1].starts_with("FBR_LISTEN: "));
  CHECK(errors[2].starts_with("verification_tokens: at least one token is required"));
}

TEST_CASE("config load_config: reads the file and records where it came from") {
  const TempFile file(R"({"listen": "127.0.0.1:7000", "verification_tokens": ["t"]})");
  const LoadResult r = load_config(file.path(), {});
  INFO(test::joined(r.errors));
  REQUIRE(r.ok());
  CHECK(r.config->listen.port == 7000);
  CHECK(r.config->source_file == file.path());
}

TEST_CASE("config load_config: errors name the file") {
  const TempFile file("{\n  \"listen\": \n}");
  const LoadResult r = load_config(file.path(), {});
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].starts_with(file.path().string() + ":3:1: invalid JSON: "));
}

TEST_CASE("config load_config: a missing file is an error with the reason") {
  const LoadResult r =
      load_config("/nonexistent/fbr/config.json", {{"FBR_VERIFICATION_TOKEN", "t"}});
  CHECK_FALSE(r.config.has_value());
  CHECK(r.errors == std::vector<std::string>{
                        "cannot read /nonexistent/fbr/config.json: No such file or directory"});
  const LoadResult dir = load_config(std::filesystem::temp_directory_path(), {});
  REQUIRE(dir.errors.size() == 1);
  CHECK(dir.errors[0] ==
        "cannot read " + std::filesystem::temp_directory_path().string() + ": Is a directory");
}

TEST_CASE("config load_config: FBR_CONFIG names the file when none is given") {
  const TempFile file(R"({"path": "/from-fbr-config"})");
  const Environment env = {{"FBR_CONFIG", file.path().string()}, {"FBR_VERIFICATION_TOKEN", "t"}};
  const LoadResult r = load_config("", env);
  INFO(test::joined(r.errors));
  REQUIRE(r.ok());
  CHECK(r.config->path == "/from-fbr-config");
  CHECK(r.config->source_file == file.path());

  // An explicit file wins over FBR_CONFIG.
  const TempFile other(R"({"path": "/explicit"})");
  CHECK(load_config(other.path(), env).config->path == "/explicit");

  // FBR_CONFIG naming a missing file is an error, not a silent fallback to defaults.
  const LoadResult missing = load_config("", {{"FBR_CONFIG", "/nonexistent/c.json"}});
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0].starts_with("cannot read /nonexistent/c.json: "));
}

TEST_CASE("config load_config: with no file at all defaults and the environment") {
  const LoadResult r = load_config("", {{"FBR_VERIFICATION_TOKEN", "t"}, {"FBR_LISTEN", "[::]:0"}});
  INFO(test::joined(r.errors));
  REQUIRE(r.ok());
  CHECK(r.config->listen.host == "::");
  CHECK(r.config->path == "/webhook");
  CHECK(r.config->source_file.empty());
  CHECK(load_config("", {}).errors ==
        std::vector<std::string>{"verification_tokens: at least one token is required (set it in "
                                 "the file or FBR_VERIFICATION_TOKEN), unless jwt or oauth_server "
                                 "authenticates requests"});
}

TEST_CASE("config process_environment: only the variables named FBR_something") {
  REQUIRE(::setenv("FBR_UNIT_TEST_VALUE", "a=b", 1) == 0);
  REQUIRE(::setenv("NOT_FBR_UNIT_TEST", "x", 1) == 0);
  const Environment env = process_environment();
  ::unsetenv("FBR_UNIT_TEST_VALUE");
  ::unsetenv("NOT_FBR_UNIT_TEST");
  REQUIRE(env.count("FBR_UNIT_TEST_VALUE") == 1);
  CHECK(env.at("FBR_UNIT_TEST_VALUE") == "a=b");
  for (const auto& entry : env) {
    const std::string& name = entry.first;  // CAPTURE of a structured binding: clang 14 refuses it
    CAPTURE(name);
    CHECK(name.starts_with("FBR_"));
  }
}

}  // namespace
}  // namespace fbr::config
