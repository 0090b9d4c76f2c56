// journal.nats: the JetStream journal's keys, their FBR_JOURNAL_NATS_* overrides, and what
// check-config shows of them (never a token or a password).
#include <doctest/doctest.h>

#include <string>

#include "config/config.hpp"
#include "tests/unit/config/support.hpp"

namespace fbr::config {
namespace {

using test::contains;
using test::error_of;
using test::parse_ok;

std::string journal(const std::string& nats_members) {
  return R"({"journal": {"backend": "nats", "nats": {"servers": ["nats://n:4222"])" +
         (nats_members.empty() ? "" : ", " + nats_members) + "}}}";
}

Environment env_with(std::initializer_list<std::pair<const std::string, std::string>> more) {
  Environment env = test::kTokenEnv;
  env.insert(more.begin(), more.end());
  return env;
}

TEST_CASE("config nats journal: duplicate window and token variable defaults") {
  const Config c = parse_ok("{}");
  CHECK(c.journal.nats.duplicate_window_s == 86400);
  CHECK(c.journal.nats.token_env.empty());
}

TEST_CASE("config nats journal: duplicate_window_s and token_env are read") {
  const Config c = parse_ok(journal(R"("duplicate_window_s": 3600, "token_env": "NATS_TOKEN")"));
  CHECK(c.journal.nats.duplicate_window_s == 3600);
  CHECK(c.journal.nats.token_env == "NATS_TOKEN");
  CHECK(parse_ok(journal(R"("token_env": null)")).journal.nats.token_env.empty());
  CHECK(parse_ok(journal(R"("duplicate_window_s": 60)")).journal.nats.duplicate_window_s == 60);
  CHECK(parse_ok(journal(R"("duplicate_window_s": 2592000)")).journal.nats.duplicate_window_s ==
        2592000);
}

TEST_CASE("config nats journal: bad values name their key") {
  CHECK(error_of(journal(R"("duplicate_window_s": 59)")) ==
        "journal.nats.duplicate_window_s: must be an integer from 60 to 2592000, got 59");
  CHECK(error_of(journal(R"("duplicate_window_s": 2592001)")) ==
        "journal.nats.duplicate_window_s: must be an integer from 60 to 2592000, got 2592001");
  CHECK(error_of(journal(R"("duplicate_window_s": "1h")"))
            .starts_with("journal.nats.duplicate_window_s: must be an integer"));
  CHECK(
      error_of(journal(R"("token_env": "1BAD")")) ==
      R"(journal.nats.token_env: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got "1BAD")");
  CHECK(error_of(journal(R"("stream": "a.b")"))
            .starts_with("journal.nats.stream: must be a "
                         "JetStream stream name"));
  CHECK(error_of(journal(R"("subject": "fbr.*")"))
            .starts_with("journal.nats.subject: must be a NATS subject without wildcards"));
  CHECK(error_of(journal(R"("subject": "fbr..events")")).starts_with("journal.nats.subject: "));
  CHECK(error_of(journal(R"("subject": "fbr.events.")")).starts_with("journal.nats.subject: "));
  CHECK(error_of(journal(R"("nope": 1)")) == "journal.nats.nope: unknown key");
}

TEST_CASE("config nats journal: FBR_JOURNAL_NATS_* override the file") {
  const Config c =
      parse_ok(journal(""), env_with({
                                {"FBR_JOURNAL_NATS_SERVERS", " nats://a:4222 , nats://b:4222,"},
                                {"FBR_JOURNAL_NATS_STREAM", "EVENTS2"},
                                {"FBR_JOURNAL_NATS_SUBJECT", "redox.events"},
                                {"FBR_JOURNAL_NATS_REPLICAS", "3"},
                                {"FBR_JOURNAL_NATS_CREDENTIALS_FILE", "/run/nats.creds"},
                                {"FBR_JOURNAL_NATS_DUPLICATE_WINDOW_S", "7200"},
                                {"FBR_JOURNAL_NATS_TOKEN_ENV", "MY_NATS_TOKEN"},
                            }));
  CHECK(c.journal.nats.servers == std::vector<std::string>{"nats://a:4222", "nats://b:4222"});
  CHECK(c.journal.nats.stream == "EVENTS2");
  CHECK(c.journal.nats.subject == "redox.events");
  CHECK(c.journal.nats.replicas == 3);
  CHECK(c.journal.nats.credentials_file == "/run/nats.creds");
  CHECK(c.journal.nats.duplicate_window_s == 7200);
  CHECK(c.journal.nats.token_env == "MY_NATS_TOKEN");
  // The servers may come from the environment alone.
  CHECK(parse_ok("{}", env_with({{"FBR_JOURNAL_BACKEND", "nats"},
                                 {"FBR_JOURNAL_NATS_SERVERS", "nats://x:4222"}}))
            .journal.nats.servers.size() == 1);
}

TEST_CASE("config nats journal: bad environment values name their variable") {
  const auto bad = [](const char* name, const char* value) {
    return error_of("{}", env_with({{name, value}}));
  };
  CHECK(bad("FBR_JOURNAL_NATS_REPLICAS", "0") ==
        R"(FBR_JOURNAL_NATS_REPLICAS: must be an integer from 1 to 5, got "0")");
  CHECK(bad("FBR_JOURNAL_NATS_REPLICAS", "six").starts_with("FBR_JOURNAL_NATS_REPLICAS: "));
  CHECK(bad("FBR_JOURNAL_NATS_DUPLICATE_WINDOW_S", "10") ==
        R"(FBR_JOURNAL_NATS_DUPLICATE_WINDOW_S: must be an integer from 60 to 2592000, got "10")");
  CHECK(bad("FBR_JOURNAL_NATS_STREAM", "a b").starts_with("FBR_JOURNAL_NATS_STREAM: "));
  CHECK(bad("FBR_JOURNAL_NATS_SUBJECT", "a.>").starts_with("FBR_JOURNAL_NATS_SUBJECT: "));
  CHECK(bad("FBR_JOURNAL_NATS_TOKEN_ENV", "A-B").starts_with("FBR_JOURNAL_NATS_TOKEN_ENV: "));
  CHECK(bad("FBR_JOURNAL_NATS_CREDENTIALS_FILE", "c\x01")
            .starts_with("FBR_JOURNAL_NATS_CREDENTIALS_FILE: "));
  // A server URL may carry a password: the message does not quote it.
  const std::string server = bad("FBR_JOURNAL_NATS_SERVERS", "nats://u:pw-123@a:4222 x");
  CHECK(server.starts_with("FBR_JOURNAL_NATS_SERVERS: "));
  CHECK_FALSE(contains(server, "pw-123"));
  // "nats" without any server: the error says where servers can come from.
  CHECK(contains(error_of("{}", env_with({{"FBR_JOURNAL_BACKEND", "nats"}})),
                 "FBR_JOURNAL_NATS_SERVERS"));
}

TEST_CASE("config nats journal: check-config output shows names never secrets") {
  const std::string json = to_redacted_json(parse_ok(
      "{}",
      env_with({{"FBR_JOURNAL_BACKEND", "nats"},
                {"FBR_JOURNAL_NATS_SERVERS", "nats://jsuser:pw-777@n1:4222,nats://tok-888@n2:4222"},
                {"FBR_JOURNAL_NATS_TOKEN_ENV", "NATS_TOKEN"},
                {"FBR_JOURNAL_NATS_DUPLICATE_WINDOW_S", "120"}})));
  CHECK(contains(json, R"("nats://jsuser:<redacted>@n1:4222")"));
  CHECK(contains(json, R"("nats://<redacted>@n2:4222")"));
  CHECK_FALSE(contains(json, "pw-777"));
  CHECK_FALSE(contains(json, "tok-888"));
  CHECK(contains(json, R"("token_env": "NATS_TOKEN")"));
  CHECK(contains(json, R"("duplicate_window_s": 120)"));
}

}  // namespace
}  // namespace fbr::config
