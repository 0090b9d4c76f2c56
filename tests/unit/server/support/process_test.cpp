// process::run isolates every child the service starts: only fds 0-2, and an environment built from
// an allowlist plus what the caller sets (never the service's own secrets).
#include "server/support/process.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fbr::server::process {
namespace {

/// The descriptors `ls -l /proc/self/fd` printed, without ls's own one on that directory.
std::set<int> listed_fds(const std::string& ls_output) {
  std::set<int> fds;
  std::istringstream in(ls_output);
  for (std::string line; std::getline(in, line);) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    const std::string target = line.substr(arrow + 4);
    if (target.starts_with("/proc/") && target.ends_with("/fd")) continue;
    const auto space = line.rfind(' ', arrow - 1);
    fds.insert(std::stoi(line.substr(space + 1, arrow - space - 1)));
  }
  return fds;
}

/// The NAME=value lines of `env` output, by name.
std::set<std::string> names_in(const std::string& env_output) {
  std::set<std::string> names;
  std::istringstream in(env_output);
  for (std::string line; std::getline(in, line);) {
    if (const auto eq = line.find('='); eq != std::string::npos) names.insert(line.substr(0, eq));
  }
  return names;
}

/// Sets variables for one test, restoring the old values at the end.
class Env {
 public:
  void set(const std::string& name, const char* value) {
    const char* old = std::getenv(name.c_str());
    saved_.push_back({name, old != nullptr, old != nullptr ? old : ""});
    if (value != nullptr) {
      ::setenv(name.c_str(), value, 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  ~Env() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->was_set) {
        ::setenv(it->name.c_str(), it->value.c_str(), 1);
      } else {
        ::unsetenv(it->name.c_str());
      }
    }
  }

 private:
  struct Saved {
    std::string name;
    bool was_set;
    std::string value;
  };
  std::vector<Saved> saved_;
};

TEST_CASE("process: a child holds only fds 0-2 even when the service has inheritable ones") {
  // A listening socket and a file opened without close-on-exec, as Asio's sockets are.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(listener >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  const int file = ::open("/dev/null", O_RDONLY);
  REQUIRE(file >= 0);
  REQUIRE((::fcntl(listener, F_GETFD) & FD_CLOEXEC) == 0);

  Spec spec;
  spec.argv = {"/bin/sh", "-c", "ls -l /proc/self/fd"};
  spec.keep_output = 64 * 1024;
  const Result result = run(spec);
  ::close(listener);
  ::close(file);
  INFO(result.out, result.err);
  REQUIRE(result.exited_zero());
  CHECK(listed_fds(result.out) == std::set<int>{0, 1, 2});
}

TEST_CASE("process: a child's environment is PATH HOME LANG TZ and what the spec sets - only") {
  Env env;
  env.set("FBR_VERIFICATION_TOKEN", "vt-do-not-leak");
  env.set("SECRET_X", "x-do-not-leak");
  env.set("https_proxy", "http://user:pw-do-not-leak@proxy.invalid:3128");
  env.set("HOME", "/home/fbr");
  env.set("LANG", "C.UTF-8");
  env.set("TZ", "UTC");
  Spec spec;
  spec.argv = {"env"};
  spec.env = {"EXTRA=1", "TZ=Europe/Berlin", "EXTRA=2"};  // replaces TZ; the last EXTRA wins
  spec.keep_output = 64 * 1024;
  const Result result = run(spec);
  INFO(result.out);
  REQUIRE(result.exited_zero());
  CHECK(names_in(result.out) == std::set<std::string>{"PATH", "HOME", "LANG", "TZ", "EXTRA"});
  CHECK(result.out.find("do-not-leak") == std::string::npos);
  CHECK(result.out.find("HOME=/home/fbr\n") != std::string::npos);
  CHECK(result.out.find("LANG=C.UTF-8\n") != std::string::npos);
  CHECK(result.out.find("TZ=Europe/Berlin\n") != std::string::npos);
  CHECK(result.out.find("EXTRA=2") != std::string::npos);
  CHECK(result.out.find("EXTRA=1") == std::string::npos);

  // An allowlisted variable the service does not have is not made up.
  env.set("TZ", nullptr);
  spec.env.clear();
  const Result without_tz = run(spec);
  CHECK_FALSE(names_in(without_tz.out).contains("TZ"));
}

TEST_CASE("process: resolve_environment takes literals and variables and names an unset one") {
  Env env;
  env.set("FBR_TEST_CHILD_SOURCE", "from-env");
  env.set("FBR_TEST_CHILD_UNSET", nullptr);
  const config::ChildEnvironment settings = {{"A", {"literal value", ""}},
                                             {"B", {"", "FBR_TEST_CHILD_SOURCE"}}};
  CHECK(resolve_environment(settings, "handler x: env") ==
        std::vector<std::string>{"A=literal value", "B=from-env"});
  const config::ChildEnvironment unset = {{"C", {"", "FBR_TEST_CHILD_UNSET"}}};
  CHECK_THROWS_WITH_AS(resolve_environment(unset, "handler x: env"),
                       "handler x: env.C takes its value from the environment variable "
                       "FBR_TEST_CHILD_UNSET, which is not set",
                       std::runtime_error);
}

TEST_CASE("process: resolve_value takes a literal or a variable and names an unset one") {
  Env env;
  env.set("FBR_TEST_VALUE_SOURCE", "from-env");
  env.set("FBR_TEST_VALUE_UNSET", nullptr);
  CHECK(resolve_value({"literal", ""}, "handler x: header H") == "literal");
  CHECK(resolve_value({"", "FBR_TEST_VALUE_SOURCE"}, "handler x: header H") == "from-env");
  CHECK_THROWS_WITH_AS(resolve_value({"", "FBR_TEST_VALUE_UNSET"}, "handler x: header H"),
                       "handler x: header H takes its value from the environment variable "
                       "FBR_TEST_VALUE_UNSET, which is not set",
                       std::runtime_error);
}

}  // namespace
}  // namespace fbr::server::process
