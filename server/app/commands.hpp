#pragma once
// The subcommands of the one binary, each a function returning the process exit status.
#include <filesystem>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace fbr::server {

/// Exit statuses shared by the subcommands.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  ///< invalid payload, non-2xx answer, runtime failure
constexpr int kExitUsage = 2;    ///< bad command line or bad configuration

int serve(const config::Config& config);
int check_config(const config::Config& config);
int validate(const std::vector<std::string>& files);
int send(const std::string& url, const std::string& token, const std::string& file);
int events(const config::Config& config, const std::string& log_id, int limit, bool json);
int replay(const config::Config& config, const std::string& log_id, const std::string& handler);
/// `keys generate`: a new private key (PKCS#8 PEM, mode 0600) in `out`, its JWKS on stdout.
int keys_generate(const std::string& alg, const std::string& out, bool force);

/// Parses the command line and runs the chosen subcommand.
int run_cli(int argc, char** argv);

}  // namespace fbr::server
