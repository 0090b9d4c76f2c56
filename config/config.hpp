#pragma once
// The service's configuration: one immutable struct, loaded from a JSON file (comments allowed) and
// then FBR_* environment overrides. Every default is the safe one (loopback, strict limits).
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/backoff.hpp"
#include "core/when.hpp"

namespace fbr::config {

enum class InvalidPayloads { kReject, kQuarantine };
enum class LogFormat { kText, kJson };

struct Listen {
  std::string host = "127.0.0.1";  ///< IPv6 without brackets ("::")
  std::uint16_t port = 8080;       ///< 0 = any free port (the chosen one is logged)
  bool operator==(const Listen&) const = default;
};

struct Tls {
  std::string cert_file;
  std::string key_file;
  [[nodiscard]] bool enabled() const { return !cert_file.empty(); }
};

/// The admin listener: the event console (its page and JSON API), /metrics and the detailed
/// readiness, apart from the webhook listener Redox reaches. Off unless `listen` is set.
struct Admin {
  std::optional<Listen> listen;         ///< none = off; port 0 = any free port (logged)
  std::vector<std::string> tokens;      ///< required unless `listen` is a loopback address
  Tls tls;                              ///< empty: the top-level tls (if any)
  std::uint64_t session_ttl_s = 43200;  ///< a console login's cookie lifetime (12 h)
  [[nodiscard]] bool enabled() const { return listen.has_value(); }
  /// A loopback address: 127.0.0.0/8, ::1 or localhost.
  [[nodiscard]] bool loopback() const;
};

struct Log {
  std::string level = "info";  ///< trace, debug, info, warn, error, critical, off
  LogFormat format = LogFormat::kText;
};

/// Connection limits and timeouts (safe defaults; see README "Configuration").
struct Limits {
  std::uint32_t max_header_bytes = 16 * 1024;
  std::uint32_t header_timeout_ms = 10'000;  ///< whole request header must arrive in this time
  std::uint32_t body_timeout_ms = 60'000;    ///< whole body must arrive in this time
  std::uint32_t idle_timeout_ms = 60'000;    ///< keep-alive connection with no request is closed
  std::uint32_t max_connections = 10'000;
  /// A body without a header token (only a verification challenge may be one) is read up to
  /// this many bytes; past it, 401 without reading further.
  std::uint32_t max_unauthenticated_body_bytes = 4096;
};

struct NatsJournal {
  std::vector<std::string> servers;  ///< nats://[user:password@]host:port; tried in turn
  std::string stream = "FBR_EVENTS";
  std::string subject =
      "fbr.events";  ///< events; quarantine, dead letters, replays under "<subject>."
  int replicas = 1;
  std::string credentials_file;
  /// JetStream's de-duplication window (Nats-Msg-Id = event key): longer than Redox retries.
  std::uint32_t duplicate_window_s = 86'400;
  std::string token_env;  ///< name of the variable holding a NATS auth token (read at start)
};

struct Journal {
  std::string backend = "sqlite";  ///< "sqlite" or "nats"
  NatsJournal nats;
};

/// A value given as a literal, or as {"env": "NAME"}: the value of an environment variable read
/// when the handler starts (so secrets stay out of the file). The http handler's headers and the
/// environment given to children (exec `env`, download `token_command_env`) take these.
struct LiteralOrEnv {
  std::string literal;
  std::string env;  ///< non-empty: take the value from this variable
};
using HeaderValue = LiteralOrEnv;
/// NAME -> value: variables a child gets on top of PATH, HOME, LANG and TZ.
using ChildEnvironment = std::map<std::string, LiteralOrEnv>;

struct FileHandler {
  std::string dir;   ///< one <log-id>.json per event, or
  std::string path;  ///< one NDJSON line per event
};
struct ExecHandler {
  std::vector<std::string> command;
  std::uint32_t timeout_ms = 30'000;
  ChildEnvironment env;
};
struct HttpHandler {
  std::string url;
  std::map<std::string, HeaderValue> headers;
  std::uint32_t timeout_ms = 10'000;
};
/// Where URLs that come from events may lead (the download handler's; server/support/egress.hpp
/// applies it). Host patterns: exact names, "*.suffix", IPv4 and IPv6 literals.
struct Egress {
  std::vector<std::string> allowed_hosts;  ///< empty: any host whose addresses are public
  bool allow_private_addresses = false;    ///< loopback, RFC 1918, link-local, ... for any host
  /// Hosts that get the access token; nullopt: the host of the event's `request` URL.
  std::optional<std::vector<std::string>> token_hosts;
};
/// How the download handler gets its access token from a token endpoint (`auth`): SMART Backend
/// Services (a JWT client assertion signed with our key) or a client secret. type "" = none (the
/// token_env / token_file / token_command sources, or no token).
struct DownloadAuth {
  std::string type;           ///< "", "smart_backend" or "client_credentials"
  std::string token_url;      ///< the token endpoint, or
  std::string fhir_base_url;  ///< discovered from <base>/.well-known/smart-configuration
  std::string client_id;
  /// smart_backend: PEM or JWK private keys; the first signs, all are published in
  /// /.well-known/jwks.json (several while rotating).
  std::vector<std::string> private_key_file;
  std::string kid;  ///< empty: the key's RFC 7638 thumbprint (or the JWK's own kid)
  std::string alg;  ///< empty: ES384 for an EC key, RS384 for an RSA key
  std::string scope = "system/*.read";
  std::string jku;                ///< sent in the assertion's header when set
  std::string client_secret_env;  ///< client_credentials: the variable holding the secret
  [[nodiscard]] bool enabled() const { return !type.empty(); }
};
/// The download handler's `attachments`: whether the files that DocumentReference resources point
/// at (content[].attachment.url) are fetched too, which content types, and how large each may be.
struct DownloadAttachments {
  std::string mode = "off";        ///< "off" or "download"
  std::vector<std::string> types;  ///< MIME types ("application/pdf", "image/*"); empty: all
  std::uint64_t max_bytes = 1ULL << 30;
  std::uint64_t max_count = 10000;  ///< attachments (resource and URL pairs) of one event
};
struct DownloadHandler {
  std::string dir;
  DownloadAuth auth;
  int parallel = 4;
  std::string token_env;
  std::string token_file;
  std::vector<std::string> token_command;
  ChildEnvironment token_command_env;
  std::string store = "ndjson";  ///< "ndjson" or "gzip"
  std::uint32_t connect_timeout_ms = 10'000;
  std::uint32_t idle_timeout_ms = 60'000;  ///< a transfer that receives nothing this long is cut
  /// A transfer slower than this on average over min_speed_window_s is cut (then retried).
  std::uint32_t min_speed_bytes_per_s = 1024;
  std::uint32_t min_speed_window_s = 60;
  std::uint32_t max_files = 10'000;     ///< output[] + error[] + deleted[] of one event, at most
  std::uint32_t transfer_attempts = 5;  ///< tries of one file within one delivery attempt
  /// Longest wait (Retry-After or back-off) between those tries; a server asking for more ends
  /// the attempt and the delivery's retry policy takes over.
  std::uint32_t max_retry_wait_ms = 30'000;
  Egress egress;
  std::uint64_t max_file_bytes = 16ULL << 30;    ///< received or NDJSON bytes of one file
  std::uint64_t max_event_bytes = 256ULL << 30;  ///< stored bytes of one event's files
  std::uint32_t max_decompression_ratio = 100;   ///< NDJSON bytes over received bytes
  /// Free space the download volume keeps; nullopt: 5 % of it or 1 GiB, whichever is smaller.
  std::optional<std::uint64_t> min_free_bytes;
  DownloadAttachments attachments;
};
struct NatsHandler {
  std::vector<std::string> servers;
  std::string subject;
  std::string stream;
  std::string credentials_file;
};

struct Handler {
  std::string name;
  std::string type;  ///< file, exec, http, download, nats
  core::WhenFilter when;
  std::optional<core::RetryPolicy> retry;  ///< overrides Config::retry when set
  /// Deliveries of this handler that run at once (effective value: the parser fills in the
  /// default, dispatch.concurrency - 1 when other handlers exist, else dispatch.concurrency).
  int concurrency = 0;
  std::variant<FileHandler, ExecHandler, HttpHandler, DownloadHandler, NatsHandler> settings;
};

/// Inbound JWT bearer tokens (Redox's "auth credentials"): checked against a JWKS.
struct Jwt {
  std::string jwks_file;
  std::string jwks_url;
  std::string issuer;    ///< required with jwt: the `iss` every token must carry
  std::string audience;  ///< required with jwt: a value `aud` must be (or contain)
  std::vector<std::string> algorithms = {"RS256", "RS384", "PS256", "PS384", "ES256", "ES384"};
  std::uint32_t leeway_s = 60;          ///< clock skew allowed on exp, nbf and iat
  std::string required_scope;           ///< when set, `scope` (space-separated) must hold it
  std::uint32_t jwks_refresh_s = 3600;  ///< jwks_url is fetched again this often
  [[nodiscard]] bool enabled() const { return !jwks_file.empty() || !jwks_url.empty(); }
};

/// One client of the built-in token endpoint.
struct OAuthClient {
  std::string client_id;
  std::string client_secret_env;  ///< the variable holding its secret (read at start)
};

/// The built-in OAuth 2.0 client-credentials token endpoint (POST /oauth/token), for Redox's
/// "OAuth 2.0" auth credentials when the user has no identity provider of their own.
struct OAuthServer {
  std::vector<OAuthClient> clients;  ///< empty: no endpoint
  /// PEM or JWK private keys; the first signs, all verify and are published. Empty: a key the
  /// service generates in data_dir/oauth-signing-key.pem (0600) on first start.
  std::vector<std::string> signing_key_file;
  std::uint32_t token_ttl_s = 300;
  [[nodiscard]] bool enabled() const { return !clients.empty(); }
};

struct Config {
  Listen listen;
  std::string path = "/webhook";
  /// Shared tokens; at least one of verification_tokens, jwt and oauth_server is required.
  std::vector<std::string> verification_tokens;
  Jwt jwt;
  OAuthServer oauth_server;
  std::filesystem::path data_dir = "./data";
  std::uint64_t max_body_bytes = 41'943'040;  ///< 40 MiB, Redox's data-model limit
  InvalidPayloads invalid_payloads = InvalidPayloads::kReject;
  Tls tls;
  Admin admin;
  Log log;
  Limits limits;
  core::RetryPolicy retry;
  Journal journal;
  int dispatch_concurrency = 8;
  std::vector<Handler> handlers;
  std::filesystem::path source_file;  ///< the file it was loaded from, empty if none
};

using Environment = std::map<std::string, std::string>;

/// The FBR_* variables (and only those) of the current process environment.
Environment process_environment();

/// Either a Config or every error found, each naming its key (e.g. "handlers[1].type: ...").
struct LoadResult {
  std::optional<Config> config;
  std::vector<std::string> errors;
  [[nodiscard]] bool ok() const { return errors.empty(); }
};

/// Parses configuration text (JSON with // and /* */ comments) and applies `env` overrides.
/// `origin` names the source in messages (a file name).
LoadResult parse_config(std::string_view text, const Environment& env, std::string_view origin);

/// Loads `file` (or, when empty, $FBR_CONFIG from `env`, or no file at all: defaults + env).
LoadResult load_config(const std::filesystem::path& file, const Environment& env);

/// The effective configuration as pretty JSON, with every secret (tokens, header values that are
/// literals) replaced by "<redacted>".
std::string to_redacted_json(const Config& config);

}  // namespace fbr::config
