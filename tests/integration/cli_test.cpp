// The command line: send, validate, check-config, and serve's refusal to start without a token.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

namespace {

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

/// `send` prints the status on its first line and the response body after it.
struct SendOutput {
  std::string first_line;
  std::string body;
};

SendOutput split_send_output(const std::string& out) {
  const auto newline = out.find('\n');
  if (newline == std::string::npos) return {trim(out), ""};
  return {trim(out.substr(0, newline)), trim(out.substr(newline + 1))};
}

bool starts_with_status(const std::string& line, int status) {
  const std::string code = std::to_string(status);
  return line.rfind(code, 0) == 0 && (line.size() == code.size() || line[code.size()] == ' ');
}

}  // namespace

TEST_CASE("cli: send delivers each fixture like Redox and prints what the server answered") {
  TempDir dir;
  ServerConfig config;
  config.tokens = std::vector<std::string>{"change-me"};  // verification-challenge.json's token
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/webhook";
  const auto send = [&](const std::string& file) {
    return run_cli({"send", "--url", url, "--token", "change-me", fixture_path(file).string()});
  };

  struct Accepted {
    std::string file;
    std::string log_id;
  };
  for (const Accepted& c :
       {Accepted{"complete.json", "d9f5d293-7110-461e-a875-3beb089e79f3"},
        Accepted{"complete-status-as-string.json", "5f7e2a10-8c4b-4d9e-a1f3-2b6c7d8e9f01"},
        Accepted{"in-progress.json", "0b6c1d52-3f2a-4f57-9a43-5d0f1c6a9e11"}}) {
    CAPTURE(c.file);
    const auto cli = send(c.file);
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 0);
    const auto printed = split_send_output(cli.out);
    CHECK(starts_with_status(printed.first_line, 200));
    const auto doc = parse_json(printed.body);
    REQUIRE_MESSAGE(!doc.HasParseError(), "send did not print the JSON body: ", cli.out);
    CHECK(json_str(doc, "/status") == "accepted");
    CHECK(json_str(doc, "/logId") == c.log_id);
    CHECK(json_raw(doc, "/duplicate") == "false");
    CHECK(journal_count(server, "events", "log_id = ?", {c.log_id}) == 1);
  }

  {
    const auto cli = send("invalid-several-errors.json");
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 1);
    const auto printed = split_send_output(cli.out);
    CHECK(starts_with_status(printed.first_line, 400));
    // Exactly what the server answers to that body.
    const auto direct =
        http(server.port(), post_event(fixture("invalid-several-errors.json"), "change-me"));
    REQUIRE(direct.status == 400);
    CHECK(printed.body == trim(direct.body));
    CHECK(printed.body.find("/output/0/url") != std::string::npos);
  }

  {
    const auto cli = send("verification-challenge.json");
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 0);
    const auto printed = split_send_output(cli.out);
    CHECK(starts_with_status(printed.first_line, 200));
    CHECK(printed.body == "2e73f864-a0e9-4764-a7d5-91fe5836db22");
  }

  {  // The token is what authenticates send, as for Redox.
    const auto cli = run_cli(
        {"send", "--url", url, "--token", "wrong-token", fixture_path("complete.json").string()});
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 1);
    CHECK(starts_with_status(split_send_output(cli.out).first_line, 401));
  }

  CHECK(journal_count(server, "events") == 3);
}

TEST_CASE("cli: validate exits 1 listing every error with its pointer and 0 on valid events") {
  {
    const auto cli = run_cli({"validate", fixture_path("invalid-several-errors.json").string()});
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 1);
    for (const std::string pointer : {"/Meta/DataModel", "/status", "/output/0/url"}) {
      CHECK_MESSAGE(cli.output().find(pointer) != std::string::npos, "no error at ", pointer);
    }
  }
  {
    const auto cli = run_cli({"validate", fixture_path("complete.json").string()});
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 0);
  }
  {
    const auto cli = run_cli({"validate", fixture_path("complete.json").string(),
                              fixture_path("complete-status-as-string.json").string(),
                              fixture_path("in-progress.json").string()});
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 0);
  }
  {
    const auto cli = run_cli({"validate", fixture_path("complete.json").string(),
                              fixture_path("invalid-several-errors.json").string()});
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 1);
    CHECK(cli.output().find("/output/0/url") != std::string::npos);
  }
  {  // `-` is stdin
    CHECK(run_cli({"validate", "-"}, fixture("complete.json")).exit_code == 0);
    CHECK(run_cli({"validate", "-"}, fixture("invalid-several-errors.json")).exit_code == 1);
  }
}

TEST_CASE("cli: serve refuses to start without a verification token and says why") {
  TempDir dir;
  for (const bool empty_list : {false, true}) {
    CAPTURE(empty_list);
    ServerConfig config;
    config.tokens = empty_list ? std::optional<std::vector<std::string>>(std::vector<std::string>{})
                               : std::nullopt;
    const auto file = dir.path() / "no-token.json";
    write_file(file, config_json(config, dir.path() / "data"));

    const auto serve = run_cli({"serve", "--config", file.string()}, {}, 20s);
    CAPTURE(serve.output());
    CHECK_MESSAGE(serve.exit_code == 2, "serve exit code ", serve.exit_code,
                  serve.exit_code == -1 ? " (it kept running)" : "");
    CHECK(serve.output().find("verification_tokens") != std::string::npos);

    const auto check = run_cli({"check-config", "--config", file.string()});
    CAPTURE(check.output());
    CHECK(check.exit_code == 2);
    CHECK(check.output().find("verification_tokens") != std::string::npos);
  }
}

TEST_CASE("cli: check-config prints the effective config without its secrets") {
  TempDir dir;
  const std::string secret = "s3cret-token-value-7781";
  ServerConfig config;
  config.tokens = std::vector<std::string>{secret, "second-secret-4410"};
  const auto file = dir.path() / "config.json";
  write_file(file, config_json(config, dir.path() / "data"));

  const auto cli = run_cli({"check-config", "--config", file.string()});
  CAPTURE(cli.output());
  CHECK(cli.exit_code == 0);
  CHECK(cli.output().find("verification_tokens") != std::string::npos);
  CHECK(cli.output().find((dir.path() / "data").string()) != std::string::npos);  // effective
  CHECK(cli.output().find(secret) == std::string::npos);
  CHECK(cli.output().find("second-secret-4410") == std::string::npos);

  // An unknown key is an error naming the key.
  config.extra_members = R"("bogus_key": 1)";
  write_file(file, config_json(config, dir.path() / "data"));
  const auto bad = run_cli({"check-config", "--config", file.string()});
  CAPTURE(bad.output());
  CHECK(bad.exit_code == 2);
  CHECK(bad.output().find("bogus_key") != std::string::npos);
  CHECK(bad.output().find(secret) == std::string::npos);
}
