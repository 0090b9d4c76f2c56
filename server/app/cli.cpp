#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "server/app/commands.hpp"

namespace fbr::server {
namespace {

/// Loads the configuration for a subcommand; prints every error and returns nullopt on failure.
std::optional<config::Config> load(const std::string& file) {
  auto result = config::load_config(file, config::process_environment());
  if (!result.ok()) {
    std::cerr << "fhir-bulk-receiver: invalid configuration";
    if (!file.empty()) std::cerr << " (" << file << ")";
    std::cerr << ":\n";
    for (const auto& e : result.errors)
      std::cerr << "  " << e << "\n";
    return std::nullopt;
  }
  return std::move(result.config);
}

constexpr const char* kSendTokenVariable = "FBR_SEND_TOKEN";

/// send's token: --token (visible to everyone in `ps`), else the variable --token-env names, else
/// FBR_SEND_TOKEN. nullopt (and a message on stderr naming the three) when none gives one.
std::optional<std::string> send_token(const std::string& token, const std::string& token_env) {
  if (!token.empty() && !token_env.empty()) {
    std::cerr << "fhir-bulk-receiver: send: give --token or --token-env, not both\n";
    return std::nullopt;
  }
  if (!token.empty()) return token;
  const std::string variable = token_env.empty() ? kSendTokenVariable : token_env;
  const char* value = std::getenv(variable.c_str());
  if (value != nullptr && *value != '\0') return std::string(value);
  if (!token_env.empty()) {
    std::cerr << "fhir-bulk-receiver: send: --token-env names " << token_env
              << ", which is not set or empty\n";
  } else {
    std::cerr << "fhir-bulk-receiver: send needs a verification token: set " << kSendTokenVariable
              << ", or give --token-env NAME (a variable holding it) or --token TOKEN (visible "
                 "in ps)\n";
  }
  return std::nullopt;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "fhir-bulk-receiver: a Redox destination endpoint for FHIR Bulk Data Access "
      "status-check-response events.",
      "fhir-bulk-receiver"};
  app.set_version_flag("--version", std::string("fhir-bulk-receiver ") + FBR_VERSION);
  app.require_subcommand(0, 1);
  app.fallthrough();
  std::string config_file;
  app.add_option("-c,--config", config_file,
                 "configuration file (JSON, comments allowed); default $FBR_CONFIG")
      ->option_text("FILE");

  auto* serve_cmd = app.add_subcommand("serve", "run the service (the default)");
  auto* check_cmd = app.add_subcommand(
      "check-config",
      "validate the configuration and print it, secrets redacted (exit 0 ok, 2 invalid)");

  std::vector<std::string> files;
  auto* validate_cmd = app.add_subcommand(
      "validate",
      "validate payload files offline against the model (exit 0 all valid, 1 any invalid)");
  validate_cmd->add_option("files", files, "payload files; - reads standard input")
      ->required()
      ->option_text("FILE...");

  std::string url;
  std::string token;
  std::string token_env;
  std::string send_file;
  auto* send_cmd =
      app.add_subcommand("send", "send a test webhook the way Redox does; print status and body");
  send_cmd->add_option("--url", url, "where to send, e.g. http://127.0.0.1:8080/webhook")
      ->required();
  send_cmd
      ->add_option("--token-env", token_env,
                   "name of an environment variable holding the verification token "
                   "(default: FBR_SEND_TOKEN)")
      ->option_text("NAME");
  send_cmd->add_option("--token", token,
                       "verification token (header verification-token); visible to every user "
                       "in ps: prefer --token-env or FBR_SEND_TOKEN");
  send_cmd->add_option("file", send_file, "payload file; - reads standard input")->required();

  std::string log_id;
  int limit = 50;
  bool json = false;
  auto* events_cmd = app.add_subcommand(
      "events", "list journaled events with their attempts and deliveries (newest first)");
  events_cmd->add_option("--log-id", log_id, "only this Redox Log ID (or event key)");
  events_cmd->add_option("--limit", limit, "at most this many events")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  events_cmd->add_flag("--json", json, "print a JSON array");

  std::string replay_log_id;
  std::string replay_handler;
  auto* replay_cmd = app.add_subcommand(
      "replay", "run the handlers for a journaled event again (works while the server runs)");
  replay_cmd->add_option("--log-id", replay_log_id, "the event's Redox Log ID (or event key)")
      ->required();
  replay_cmd->add_option("--handler", replay_handler, "only this handler (default: all of them)");

  std::string key_alg;
  std::string key_out;
  bool key_force = false;
  auto* keys_cmd = app.add_subcommand("keys", "signing keys for SMART Backend Services");
  keys_cmd->require_subcommand(1);
  auto* keys_generate_cmd = keys_cmd->add_subcommand(
      "generate", "write a new private key (PKCS#8 PEM, mode 0600) and print its public JWKS");
  keys_generate_cmd
      ->add_option("--alg", key_alg, "ES384 or RS384 (also ES256, RS256, PS256, PS384)")
      ->required();
  keys_generate_cmd->add_option("--out", key_out, "the private key file to create")
      ->required()
      ->option_text("FILE");
  keys_generate_cmd->add_flag("--force", key_force, "replace an existing file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "fhir-bulk-receiver: " << e.what() << "\n";
    std::cerr << "usage: fhir-bulk-receiver "
                 "[serve|check-config|validate|send|events|replay|keys generate] "
                 "[--config FILE] ... (see --help)\n";
    return kExitUsage;
  }

  if (*validate_cmd) return validate(files);
  if (*keys_generate_cmd) return keys_generate(key_alg, key_out, key_force);
  if (*send_cmd) {
    const auto send_with = send_token(token, token_env);
    return send_with ? send(url, *send_with, send_file) : kExitUsage;
  }
  auto config = load(config_file);
  if (!config) return kExitUsage;
  if (*check_cmd) return check_config(*config);
  if (*events_cmd) return events(*config, log_id, limit, json);
  if (*replay_cmd) return replay(*config, replay_log_id, replay_handler);
  (void)serve_cmd;
  return serve(*config);
}

}  // namespace fbr::server
