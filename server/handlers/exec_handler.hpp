#pragma once
// The `exec` handler: runs a command (argv, no shell) in its own process group with the raw event
// on stdin and in FBR_EVENT_FILE; exit 0 is done, anything else is retried; `timeout_ms` kills the
// whole group (SIGTERM, then SIGKILL 2 s later). The command gets only fds 0-2 and PATH, HOME,
// LANG, TZ, the FBR_* event variables and what the handler's `env` lists (see process.hpp).
#include <filesystem>
#include <string>
#include <vector>

#include "server/handlers/handler.hpp"

namespace fbr::server {

class ExecHandler final : public Handler {
 public:
  /// `data_dir`/tmp holds each run's FBR_EVENT_FILE (created 0700 when first needed).
  ExecHandler(std::string name, config::ExecHandler settings, const std::filesystem::path& data_dir,
              const Logger& log);

 protected:
  Outcome run(const Delivery& delivery) override;

 private:
  config::ExecHandler settings_;
  std::filesystem::path tmp_dir_;
  std::vector<std::string> env_;  ///< `env` resolved at start, NAME=value
};

}  // namespace fbr::server
