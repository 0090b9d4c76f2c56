// The rules that span several keys (see checks.hpp).
#include "config/checks.hpp"

#include <algorithm>
#include <variant>

namespace fbr::config::detail {

void check_retry(Reader& r, const std::string& path, const core::RetryPolicy& retry,
                 bool inherited) {
  if (retry.max_backoff_ms < retry.initial_backoff_ms) {
    r.fail(path + ".max_backoff_ms",
           "must be at least initial_backoff_ms (" + std::to_string(retry.initial_backoff_ms) +
               "), got " + std::to_string(retry.max_backoff_ms) +
               (inherited ? " (inherited from retry.max_backoff_ms)" : ""));
  }
}

void check_handler(Reader& r, const std::string& path, const Handler& handler) {
  if (const auto* file = std::get_if<FileHandler>(&handler.settings)) {
    if (file->dir.empty() == file->path.empty() && !r.reported(path + ".dir") &&
        !r.reported(path + ".path")) {
      r.fail(path,
             "a file handler needs exactly one of dir (a file per event) or path (one "
             "NDJSON file)");
    }
  } else if (const auto* download = std::get_if<DownloadHandler>(&handler.settings)) {
    const int tokens = int{!download->token_env.empty()} + int{!download->token_file.empty()} +
                       int{!download->token_command.empty()};
    if (tokens > 1) r.fail(path, "at most one of token_env, token_file, token_command may be set");
  }
}

void check_concurrency(Reader& r, const std::string& path, Config& config) {
  // One handler that hangs (a download dribbling bytes) must leave a worker for the others; a
  // handler alone may use them all.
  const int fallback = config.handlers.size() > 1 ? std::max(1, config.dispatch_concurrency - 1)
                                                  : config.dispatch_concurrency;
  for (std::size_t i = 0; i < config.handlers.size(); ++i) {
    Handler& handler = config.handlers[i];
    if (handler.concurrency == 0) {
      handler.concurrency = fallback;
    } else if (handler.concurrency > config.dispatch_concurrency) {
      r.fail(element(path, i) + ".concurrency",
             std::to_string(handler.concurrency) + " is more than dispatch.concurrency (" +
                 std::to_string(config.dispatch_concurrency) +
                 "): a handler cannot run more deliveries than there are workers");
    }
  }
}

void check_effective(const Config& config, std::vector<std::string>& errors) {
  if (config.verification_tokens.empty() && !reported(errors, "verification_tokens") &&
      !reported(errors, "FBR_VERIFICATION_TOKEN")) {
    errors.emplace_back(
        "verification_tokens: at least one token is required (set it in the file or "
        "FBR_VERIFICATION_TOKEN)");
  }
  if (config.tls.cert_file.empty() != config.tls.key_file.empty() && !reported(errors, "tls") &&
      !reported(errors, "FBR_TLS_CERT_FILE") && !reported(errors, "FBR_TLS_KEY_FILE")) {
    errors.emplace_back(
        "tls: cert_file and key_file must be set together (or FBR_TLS_CERT_FILE and "
        "FBR_TLS_KEY_FILE)");
  }
  if (config.journal.backend == "nats" && config.journal.nats.servers.empty() &&
      !reported(errors, "journal.nats.servers") && !reported(errors, "FBR_JOURNAL_NATS_SERVERS")) {
    errors.emplace_back(
        R"(journal.nats.servers: at least one server is required when journal.backend is "nats" (or FBR_JOURNAL_NATS_SERVERS))");
  }
}

}  // namespace fbr::config::detail
