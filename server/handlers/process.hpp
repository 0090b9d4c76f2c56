#pragma once
// Runs a command (argv, no shell) in its own process group with bytes on its stdin, collecting the
// tails of its stdout and stderr, with a timeout that kills the whole group (SIGTERM, then SIGKILL
// 2 s later). Shared by the exec handler and the download handler's token_command.
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbr::server::process {

struct Spec {
  std::vector<std::string> argv;  ///< program (looked up in PATH), then its arguments
  std::vector<std::string> env;   ///< NAME=value, the whole environment of the command
  std::string_view input;         ///< written to its stdin, which is then closed
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

/// This process's environment without the variables named in `dropped`.
std::vector<std::string> environment_without(std::initializer_list<std::string_view> dropped);

}  // namespace fbr::server::process
