// Where the download handler's access token comes from, and that no message ever shows it.
#include "server/handlers/download/token.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>

#include "tests/unit/server/handlers/download/support.hpp"

namespace fbr::server::download {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

void write(const fs::path& file, const std::string& text,
           fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
  std::ofstream(file, std::ios::binary) << text;
  fs::permissions(file, perms);
}

std::string error_of(const TokenSource& source) {
  try {
    (void)source.fetch();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no error>";
}

config::DownloadHandler settings() {
  config::DownloadHandler s;
  s.dir = "/tmp/unused";
  return s;
}

TEST_CASE("download: clean_token trims whitespace and refuses what a header cannot carry") {
  CHECK(clean_token(" abc.DEF-123_~+/=\n") == "abc.DEF-123_~+/=");
  CHECK_FALSE(clean_token("").has_value());
  CHECK_FALSE(clean_token(" \n").has_value());
  CHECK_FALSE(clean_token("two words").has_value());
  CHECK_FALSE(clean_token("line\nbreak").has_value());
  CHECK_FALSE(clean_token("caf\xc3\xa9").has_value());
}

TEST_CASE("download: no token source configured") {
  const TokenSource none(settings(), "dl");
  CHECK_FALSE(none.configured());
  CHECK_FALSE(none.renewable());
}

TEST_CASE("download: token_env is read at start and an unset variable names the handler") {
  auto s = settings();
  s.token_env = "FBR_TEST_DOWNLOAD_TOKEN";
  ::unsetenv("FBR_TEST_DOWNLOAD_TOKEN");
  CHECK_THROWS_WITH(TokenSource(s, "dl"),
                    "handler dl: token_env names the environment variable "
                    "FBR_TEST_DOWNLOAD_TOKEN, which is not set");
  ::setenv("FBR_TEST_DOWNLOAD_TOKEN", "bad token", 1);
  CHECK_THROWS_WITH(TokenSource(s, "dl"),
                    "handler dl: the environment variable FBR_TEST_DOWNLOAD_TOKEN does not hold a "
                    "usable token");
  ::setenv("FBR_TEST_DOWNLOAD_TOKEN", "env-secret-1\n", 1);
  const TokenSource source(s, "dl");
  ::unsetenv("FBR_TEST_DOWNLOAD_TOKEN");
  CHECK(source.configured());
  CHECK_FALSE(source.renewable());
  CHECK(source.fetch() == "env-secret-1");
  TokenSession session(source);
  CHECK(session.current().value == "env-secret-1");
  CHECK_FALSE(session.renew_after_401(session.current().generation).has_value());
}

TEST_CASE("download: token_file is read at each fetch so it can be rotated") {
  TempDir tmp;
  auto s = settings();
  s.token_file = (tmp.path / "token").string();
  const TokenSource source(s, "dl");
  CHECK(error_of(source).starts_with("token_file " + s.token_file + ": cannot read it: "));
  write(tmp.path / "token", "file-secret-1\n");
  CHECK(source.fetch() == "file-secret-1");
  write(tmp.path / "token", "file-secret-2");
  CHECK(source.fetch() == "file-secret-2");
  write(tmp.path / "token", "not one token");
  const std::string e = error_of(source);
  CHECK(e == "token_file " + s.token_file + ": the file holds no usable token");
  CHECK(e.find("not one token") == std::string::npos);
}

TEST_CASE("download: token_command is run and renewed once per session after a 401") {
  TempDir tmp;
  const fs::path counter = tmp.path / "runs";
  const fs::path script = tmp.path / "token.sh";
  // Prints cmd-secret-<n>, n counting the runs.
  write(script,
        "#!/bin/sh\nn=$(cat '" + counter.string() +
            "' 2>/dev/null || echo 0)\nn=$((n+1))\n"
            "echo $n > '" +
            counter.string() + "'\necho \"cmd-secret-$n\"\n",
        fs::perms::owner_all);
  auto s = settings();
  s.token_command = {script.string()};
  const TokenSource source(s, "dl");
  CHECK(source.renewable());
  TokenSession session(source);
  const auto first = session.current();
  CHECK(first.value == "cmd-secret-1");
  CHECK(session.current().value == "cmd-secret-1");  // cached within the session
  const auto renewed = session.renew_after_401(first.generation);
  REQUIRE(renewed.has_value());
  CHECK(renewed->value == "cmd-secret-2");
  // A thread that got the 401 with the old token gets the new one, without another run.
  CHECK(session.renew_after_401(first.generation)->value == "cmd-secret-2");
  // Renewed once: a second 401 is final.
  CHECK_FALSE(session.renew_after_401(renewed->generation).has_value());
  CHECK(TokenSession(source).current().value == "cmd-secret-3");  // a new delivery runs it again
}

TEST_CASE("download: token_command runs isolated - fds 0-2 and only its token_command_env") {
  TempDir tmp;
  const fs::path dump = tmp.path / "dump";
  const fs::path script = tmp.path / "token.sh";
  write(script,
        "#!/bin/sh\nenv > '" + dump.string() + ".env'\nls -l /proc/self/fd > '" + dump.string() +
            ".fds'\necho isolated-token\n",
        fs::perms::owner_all);
  ::setenv("FBR_VERIFICATION_TOKEN", "vt-do-not-leak", 1);
  ::setenv("DL_TOKEN_SECRET", "dl-do-not-leak", 1);
  ::setenv("FBR_TEST_CLIENT_SECRET", "client-secret-for-the-command", 1);
  auto s = settings();
  s.token_command = {script.string()};
  s.token_command_env = {{"CLIENT_SECRET", {"", "FBR_TEST_CLIENT_SECRET"}},
                         {"TOKEN_URL", {"https://idp.invalid/token", ""}}};
  const TokenSource source(s, "dl");
  const int leaked = ::open("/dev/null", O_RDONLY);  // inheritable, as Asio's sockets are
  const std::string token = source.fetch();
  ::close(leaked);
  ::unsetenv("FBR_VERIFICATION_TOKEN");
  ::unsetenv("DL_TOKEN_SECRET");
  ::unsetenv("FBR_TEST_CLIENT_SECRET");
  CHECK(token == "isolated-token");
  std::ifstream env_in(dump.string() + ".env");
  const std::string env{std::istreambuf_iterator<char>(env_in), std::istreambuf_iterator<char>()};
  INFO(env);
  CHECK(env.find("do-not-leak") == std::string::npos);
  CHECK(env.find("CLIENT_SECRET=client-secret-for-the-command\n") != std::string::npos);
  CHECK(env.find("TOKEN_URL=https://idp.invalid/token\n") != std::string::npos);
  std::ifstream fds_in(dump.string() + ".fds");
  std::set<std::string> fds;
  for (std::string line; std::getline(fds_in, line);) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos || line.ends_with("/fd")) continue;  // ls's own directory
    const auto space = line.rfind(' ', arrow - 1);
    fds.insert(line.substr(space + 1, arrow - space - 1));
  }
  CHECK(fds == std::set<std::string>{"0", "1", "2"});
}

TEST_CASE("download: a token_command_env variable that is unset stops the handler at start") {
  ::unsetenv("FBR_TEST_UNSET_VARIABLE");
  auto s = settings();
  s.token_command = {"/bin/true"};
  s.token_command_env = {{"NEEDED", {"", "FBR_TEST_UNSET_VARIABLE"}}};
  CHECK_THROWS_WITH(TokenSource(s, "dl"),
                    "handler dl: token_command_env.NEEDED takes its value from the environment "
                    "variable FBR_TEST_UNSET_VARIABLE, which is not set");
}

TEST_CASE("download: a failing token_command reports its stderr never its stdout") {
  TempDir tmp;
  const fs::path script = tmp.path / "token.sh";
  write(script, "#!/bin/sh\necho leaked-secret\necho 'no credentials' >&2\nexit 3\n",
        fs::perms::owner_all);
  auto s = settings();
  s.token_command = {script.string(), "--flag"};
  const std::string e = error_of(TokenSource(s, "dl"));
  CHECK(e == "token_command " + script.string() + ": it failed: no credentials");
  CHECK(e.find("leaked-secret") == std::string::npos);

  write(script, "#!/bin/sh\necho 'two words'\n", fs::perms::owner_all);
  const std::string bad = error_of(TokenSource(s, "dl"));
  CHECK(bad == "token_command " + script.string() + ": its output is not a usable token");

  s.token_command = {(tmp.path / "missing").string()};
  CHECK(error_of(TokenSource(s, "dl"))
            .starts_with("token_command " + s.token_command[0] + ": cannot run it: "));
}

TEST_CASE("download: a token that cannot be had is asked for once per session") {
  TempDir tmp;
  const fs::path counter = tmp.path / "runs";
  const fs::path script = tmp.path / "token.sh";
  write(script, "#!/bin/sh\necho run >> '" + counter.string() + "'\nexit 3\n",
        fs::perms::owner_all);
  auto s = settings();
  s.token_command = {script.string()};
  const TokenSource source(s, "dl");
  TokenSession session(source);
  const std::string failed = "token_command " + script.string() + ": it failed";
  CHECK_THROWS_WITH(session.current(), failed.c_str());
  // The delivery's other files fail with the same error, without running it again.
  CHECK_THROWS_WITH(session.current(), failed.c_str());
  std::ifstream in(counter);
  const std::string runs{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  CHECK(runs == "run\n");
}

TEST_CASE("download: auth names the handler when its key or secret is unusable") {
  TempDir tmp;
  auto s = settings();
  s.auth.type = "smart_backend";
  s.auth.token_url = "https://ehr.example/token";
  s.auth.client_id = "c";
  s.auth.private_key_file = {(tmp.path / "missing.pem").string()};
  try {
    const TokenSource source(s, "dl");
    FAIL("no error");
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).starts_with("handler dl: auth private_key_file " +
                                            (tmp.path / "missing.pem").string() + ": "));
  }
  auto c = settings();
  c.auth.type = "client_credentials";
  c.auth.token_url = "https://ehr.example/token";
  c.auth.client_id = "c";
  c.auth.client_secret_env = "FBR_TEST_UNSET_CLIENT_SECRET";
  ::unsetenv("FBR_TEST_UNSET_CLIENT_SECRET");
  CHECK_THROWS_WITH(TokenSource(c, "dl"),
                    "handler dl: auth client_secret_env names the environment variable "
                    "FBR_TEST_UNSET_CLIENT_SECRET, which is not set");
  ::setenv("FBR_TEST_CLIENT_SECRET_SET", "secret", 1);
  c.auth.client_secret_env = "FBR_TEST_CLIENT_SECRET_SET";
  const TokenSource source(c, "dl");
  ::unsetenv("FBR_TEST_CLIENT_SECRET_SET");
  CHECK(source.configured());
  CHECK(source.renewable());
  CHECK(source.description() == "auth client_credentials");
}

}  // namespace
}  // namespace fbr::server::download
