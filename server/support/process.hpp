#pragma once
// Runs a command (argv, no shell) in its own process group with bytes on its stdin, collecting the
// tails of its stdout and stderr, with a timeout that kills the whole group (SIGTERM, then SIGKILL
// 2 s later). Shared by the exec handler and the download handler's token_command: every child the
// service starts goes through run(), which isolates it. The child holds only fds 0-2 (not the
// listening socket, connections or the journal's files, so a restart after kill -9 can bind while
// it still runs) and an environment built from an allowlist, never the service's own (which holds
// the verification tokens, download tokens, NATS credentials and header secrets).
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace fbr::server::process {

struct Spec {
  std::vector<std::string> argv;  ///< program (looked up in PATH), then its arguments
  /// NAME=value set for the command on top of kInheritedVariables (a name given here replaces the
  /// inherited one; of a name given twice, the last wins). Nothing else reaches it.
  std::vector<std::string> env;
  std::string_view input;  ///< written to its stdin, which is then closed
  std::chrono::milliseconds timeout{30'000};
  std::size_t keep_output = 4096;  ///< bytes kept of the end of stdout and of stderr
};

struct Result {
  int spawn_error = 0;  ///< errno of posix_spawnp (0: the command ran)
  bool timed_out = false;
  std::optional<int> status;    ///< wait status; nullopt when it is unknown
  std::string out;              ///< the end of stdout, trailing whitespace removed
  std::string err;              ///< the end of stderr, trailing whitespace removed
  std::uint64_t out_bytes = 0;  ///< every byte written to stdout
  [[nodiscard]] bool exited_zero() const;
};

/// Runs the command to completion (or its timeout); throws std::runtime_error on pipe/poll
/// failures. No process of its group is left behind when it returns or throws.
Result run(const Spec& spec);

/// The variables every child gets from the service's environment, when they are set there.
inline constexpr std::array<std::string_view, 4> kInheritedVariables = {"PATH", "HOME", "LANG",
                                                                        "TZ"};

/// A literal as it is, an {"env": "V"} value read from this process's environment now. Throws
/// std::runtime_error "<what> takes its value from the environment variable V, which is not set"
/// (a start-up error), never showing a value.
std::string resolve_value(const config::LiteralOrEnv& value, const std::string& what);

/// A handler's `env` setting as NAME=value strings: literals as they are, {"env": "V"} read from
/// this process's environment now. Throws std::runtime_error "<what>.NAME takes its value from the
/// environment variable V, which is not set" (a start-up error), never showing a value.
std::vector<std::string> resolve_environment(const config::ChildEnvironment& env,
                                             const std::string& what);

}  // namespace fbr::server::process
