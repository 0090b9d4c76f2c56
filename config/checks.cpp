// The rules that span several keys (see checks.hpp).
#include "config/checks.hpp"

#include <algorithm>
#include <variant>

#include "config/text.hpp"
#include "core/text.hpp"
#include "core/url.hpp"

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

namespace {

/// http:// only to a loopback host: a token, a key set or a secret must not cross a network in
/// the clear.
bool plain_http_off_loopback(std::string_view url) {
  if (!core::lower_ascii(url.substr(0, 7)).starts_with("http://")) return false;
  const auto host = core::http_url_host(url);
  return !host ||
         !(core::lower_ascii(*host) == "localhost" || host->starts_with("127.") || *host == "::1");
}

void check_admin(const Admin& admin, std::vector<std::string>& errors) {
  if (reported(errors, "admin") || reported(errors, "FBR_ADMIN_")) return;
  if (admin.tls.cert_file.empty() != admin.tls.key_file.empty()) {
    errors.emplace_back(
        "admin.tls: cert_file and key_file must be set together (or FBR_ADMIN_TLS_CERT_FILE and "
        "FBR_ADMIN_TLS_KEY_FILE)");
  }
  if (admin.enabled() && admin.tokens.empty() && !admin.loopback()) {
    errors.emplace_back(
        "admin.tokens: at least one token is required when admin.listen is not a loopback "
        "address (" +
        format_listen(*admin.listen) +
        "): the console shows protected health information (or FBR_ADMIN_TOKENS)");
  }
}

void check_jwt(const Jwt& jwt, std::vector<std::string>& errors) {
  const bool any =
      jwt.enabled() || !jwt.issuer.empty() || !jwt.audience.empty() || !jwt.required_scope.empty();
  if (!any || reported(errors, "jwt") || reported(errors, "FBR_JWT_")) return;
  if (jwt.jwks_file.empty() == jwt.jwks_url.empty()) {
    errors.emplace_back(
        "jwt: exactly one of jwks_file or jwks_url is required (the keys tokens are checked "
        "against)");
  }
  if (jwt.issuer.empty()) {
    errors.emplace_back("jwt.issuer: required with jwt (the iss every token must carry)");
  }
  if (jwt.audience.empty()) {
    errors.emplace_back(
        "jwt.audience: required with jwt (a value the token's aud must hold: without it a token "
        "issued for another service would be accepted)");
  }
  if (plain_http_off_loopback(jwt.jwks_url)) {
    errors.emplace_back(
        "jwt.jwks_url: must be https:// (plain http:// only to a loopback host), got " +
        core::redacted_url(jwt.jwks_url));
  }
}

void check_download_auth(Reader& r, const std::string& path, const DownloadAuth& auth,
                         int token_sources) {
  const std::string at = path + ".auth";
  if (r.reported(at)) return;
  if (!auth.enabled()) {
    if (!auth.token_url.empty() || !auth.fhir_base_url.empty() || !auth.client_id.empty() ||
        !auth.private_key_file.empty() || !auth.client_secret_env.empty()) {
      r.fail(at + ".type", R"(is required with auth: "smart_backend" or "client_credentials")");
    }
    return;
  }
  if (token_sources > 0) {
    r.fail(at,
           "auth and token_env / token_file / token_command are exclusive: one source of tokens");
  }
  const auto require = [&](bool missing, const char* key, const char* why) {
    if (missing)
      r.fail(at + "." + key, std::string("is required with type \"") + auth.type + "\"" + why);
  };
  require(auth.client_id.empty(), "client_id", "");
  if (auth.token_url.empty() == auth.fhir_base_url.empty()) {
    r.fail(at,
           "exactly one of token_url or fhir_base_url (discovery through "
           ".well-known/smart-configuration) is required");
  }
  for (const std::string* url : {&auth.token_url, &auth.fhir_base_url}) {
    if (plain_http_off_loopback(*url)) {
      r.fail(at,
             "the token endpoint must be https:// (plain http:// only to a loopback host), "
             "got " +
                 core::redacted_url(*url));
    }
  }
  if (auth.type == "smart_backend") {
    require(auth.private_key_file.empty(), "private_key_file", " (a PEM or JWK private key)");
    if (!auth.client_secret_env.empty()) {
      r.fail(at + ".client_secret_env", R"(is for type "client_credentials" only)");
    }
  } else {
    require(auth.client_secret_env.empty(), "client_secret_env",
            " (the variable holding the client secret)");
    if (!auth.private_key_file.empty() || !auth.jku.empty() || !auth.alg.empty()) {
      r.fail(at, R"(private_key_file, alg and jku are for type "smart_backend" only)");
    }
  }
}

}  // namespace

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
    check_download_auth(r, path, download->auth, tokens);
    const auto& types = download->attachments.types;
    for (std::size_t i = 0; i < types.size(); ++i) {
      const std::string& t = types[i];
      const std::size_t slash = t.find('/');
      const bool ok = slash != std::string::npos && slash > 0 && slash + 1 < t.size() &&
                      t.find('/', slash + 1) == std::string::npos &&
                      t.find_first_of(" \t;,") == std::string::npos;
      if (!ok) {
        r.fail(element(path + ".attachments.types", i),
               "must be a MIME type such as \"application/pdf\" or \"image/*\", got \"" +
                   core::printable(t) + "\"");
      }
    }
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

}  // namespace fbr::config::detail

namespace fbr::config {

bool Admin::loopback() const {
  if (!listen) return false;
  const std::string host = core::lower_ascii(listen->host);
  return host == "localhost" || host.starts_with("127.") || host == "::1";
}

}  // namespace fbr::config

namespace fbr::config::detail {

void check_effective(const Config& config, std::vector<std::string>& errors) {
  if (config.verification_tokens.empty() && !config.jwt.enabled() &&
      !config.oauth_server.enabled() && !reported(errors, "verification_tokens") &&
      !reported(errors, "FBR_VERIFICATION_TOKEN") && !reported(errors, "jwt") &&
      !reported(errors, "oauth_server")) {
    errors.emplace_back(
        "verification_tokens: at least one token is required (set it in the file or "
        "FBR_VERIFICATION_TOKEN), unless jwt or oauth_server authenticates requests");
  }
  check_jwt(config.jwt, errors);
  if (config.tls.cert_file.empty() != config.tls.key_file.empty() && !reported(errors, "tls") &&
      !reported(errors, "FBR_TLS_CERT_FILE") && !reported(errors, "FBR_TLS_KEY_FILE")) {
    errors.emplace_back(
        "tls: cert_file and key_file must be set together (or FBR_TLS_CERT_FILE and "
        "FBR_TLS_KEY_FILE)");
  }
  check_admin(config.admin, errors);
  if (config.journal.backend == "nats" && config.journal.nats.servers.empty() &&
      !reported(errors, "journal.nats.servers") && !reported(errors, "FBR_JOURNAL_NATS_SERVERS")) {
    errors.emplace_back(
        R"(journal.nats.servers: at least one server is required when journal.backend is "nats" (or FBR_JOURNAL_NATS_SERVERS))");
  }
}

}  // namespace fbr::config::detail
