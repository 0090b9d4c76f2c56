// The settings table: each key of the configuration once, with its kind (how it is read and
// shown), its range or rule, its FBR_* override and whether it is required. Its default is the
// member's initializer in config.hpp. The JSON reader, the FBR_* reader, check-config's output
// and setting_docs() (which the README test reads) are walks over these sections.
#include <algorithm>
#include <array>
#include <variant>

#include "config/checks.hpp"
#include "config/handlers.hpp"
#include "config/kinds.hpp"
#include "config/table.hpp"
#include "core/text.hpp"
#include "core/url.hpp"

namespace fbr::config::detail {
namespace {

constexpr std::array<std::string_view, 5> kHandlerTypes = {"file", "exec", "http", "download",
                                                           "nats"};
constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug",    "info", "warn",
                                                        "error", "critical", "off"};
constexpr std::array<std::string_view, 2> kLogFormats = {"text", "json"};  // LogFormat's order
constexpr std::array<std::string_view, 2> kInvalidPayloads = {"reject", "quarantine"};
constexpr std::array<std::string_view, 2> kBackends = {"sqlite", "nats"};
constexpr std::array<std::string_view, 2> kStores = {"ndjson", "gzip"};
constexpr std::array<std::string_view, 2> kAttachmentModes = {"off", "download"};
// JWS algorithms (server/support/jose.hpp has the same six): never none, never HMAC.
constexpr std::array<std::string_view, 6> kJwsAlgorithms = {"RS256", "RS384", "PS256",
                                                            "PS384", "ES256", "ES384"};

// JetStream's duplicate window: at least a minute, at most 30 days (the server keeps every
// Nats-Msg-Id of the window in memory).
constexpr std::uint64_t kMinDuplicateWindowS = 60;
constexpr std::uint64_t kMaxDuplicateWindowS = 30ULL * 24 * 3600;
// A body without a header token: at least a challenge's few hundred bytes; at most what an
// unauthenticated peer may make the service hold per connection.
constexpr std::uint64_t kMinUnauthenticatedBody = 512;
constexpr std::uint64_t kMaxUnauthenticatedBody = 1 << 20;

const Checked kWebhookPath{is_valid_path,
                           R"(a URL path starting with "/" (no query, fragment or whitespace))",
                           path_problem};
const Checked kStreamName{is_stream_name,
                          "a JetStream stream name (no whitespace, '.', '*', '>', '/' or '\\')"};
const Checked kSubject{
    is_literal_subject,
    "a NATS subject without wildcards (tokens separated by '.', no whitespace, '*' or '>')"};
const Checked kEnvName{is_env_name, kEnvNameExpected, nullptr, /*nullable=*/true};
const Checked kHandlerName{is_handler_name,
                           "a non-empty name of letters, digits, '_', '.' and '-'"};
const Checked kHttpUrl{core::is_absolute_http_url, "an absolute http:// or https:// URL", nullptr,
                       false, core::redacted_url};
const Checked kOptionalHttpUrl{core::is_absolute_http_url, "an absolute http:// or https:// URL",
                               nullptr, /*nullable=*/true, core::redacted_url};
const Checked kAuthType{
    [](std::string_view v) { return v == "smart_backend" || v == "client_credentials"; },
    R"("smart_backend" or "client_credentials")", nullptr, /*nullable=*/true};
const Checked kJwsAlgorithm{
    [](std::string_view v) {
      return std::find(kJwsAlgorithms.begin(), kJwsAlgorithms.end(), v) != kJwsAlgorithms.end();
    },
    "one of RS256, RS384, PS256, PS384, ES256, ES384", nullptr, /*nullable=*/true};
const Integer kPositiveU32{1, kMaxU32};
const Integer kConcurrency{1, 1024};

/// The Config itself: dispatch.concurrency's group has no struct of its own.
constexpr auto kSelf = [](auto& config) -> auto& {
  return config;
};

const Section<Tls>& tls_settings() {
  static const Section<Tls> section = {
      leaf<Tls>("cert_file", &Tls::cert_file, OptionalText{}, {.env = "FBR_TLS_CERT_FILE"}),
      leaf<Tls>("key_file", &Tls::key_file, OptionalText{}, {.env = "FBR_TLS_KEY_FILE"}),
  };
  return section;
}

const Section<Tls>& admin_tls_settings() {
  static const Section<Tls> section = {
      leaf<Tls>("cert_file", &Tls::cert_file, OptionalText{},
                {.env = "FBR_ADMIN_TLS_CERT_FILE", .default_note = "tls.cert_file"}),
      leaf<Tls>("key_file", &Tls::key_file, OptionalText{},
                {.env = "FBR_ADMIN_TLS_KEY_FILE", .default_note = "tls.key_file"}),
  };
  return section;
}

const Section<Admin>& admin_settings() {
  static const Section<Admin> section = {
      leaf<Admin>("listen", &Admin::listen, OptionalListenAddress{},
                  {.env = "FBR_ADMIN_LISTEN", .default_note = "off"}),
      leaf<Admin>("tokens", &Admin::tokens, Tokens{},
                  {.env = "FBR_ADMIN_TOKENS", .default_note = "required off loopback"}),
      group<Admin>("tls", &Admin::tls, admin_tls_settings()),
      leaf<Admin>("session_ttl_s", &Admin::session_ttl_s, Integer{60, 30ULL * 24 * 3600}),
  };
  return section;
}

const Section<Log>& log_settings() {
  static const Section<Log> section = {
      leaf<Log>("level", &Log::level, Choice{kLogLevels}, {.env = "FBR_LOG_LEVEL"}),
      leaf<Log>("format", &Log::format, Enum<LogFormat>{kLogFormats}, {.env = "FBR_LOG_FORMAT"}),
  };
  return section;
}

const Section<NatsJournal>& nats_journal_settings() {
  using N = NatsJournal;
  static const Section<N> section = {
      leaf<N>("servers", &N::servers, Servers{.allow_empty = true},
              {.env = "FBR_JOURNAL_NATS_SERVERS", .default_note = "required with nats"}),
      leaf<N>("stream", &N::stream, kStreamName, {.env = "FBR_JOURNAL_NATS_STREAM"}),
      leaf<N>("subject", &N::subject, kSubject, {.env = "FBR_JOURNAL_NATS_SUBJECT"}),
      leaf<N>("replicas", &N::replicas, Integer{1, 5, 2}, {.env = "FBR_JOURNAL_NATS_REPLICAS"}),
      leaf<N>("credentials_file", &N::credentials_file, OptionalText{},
              {.env = "FBR_JOURNAL_NATS_CREDENTIALS_FILE"}),
      leaf<N>("duplicate_window_s", &N::duplicate_window_s,
              Integer{kMinDuplicateWindowS, kMaxDuplicateWindowS, 10},
              {.env = "FBR_JOURNAL_NATS_DUPLICATE_WINDOW_S"}),
      leaf<N>("token_env", &N::token_env, kEnvName, {.env = "FBR_JOURNAL_NATS_TOKEN_ENV"}),
  };
  return section;
}

const Section<Journal>& journal_settings() {
  static const Section<Journal> section = {
      leaf<Journal>("backend", &Journal::backend, Choice{kBackends},
                    {.env = "FBR_JOURNAL_BACKEND"}),
      group<Journal>("nats", &Journal::nats, nats_journal_settings()),
  };
  return section;
}

const Section<Config>& dispatch_settings() {
  static const Section<Config> section = {
      leaf<Config>("concurrency", &Config::dispatch_concurrency, kConcurrency),
  };
  return section;
}

const Section<Limits>& limits_settings() {
  using L = Limits;
  static const Section<L> section = {
      leaf<L>("max_header_bytes", &L::max_header_bytes, kPositiveU32),
      leaf<L>("header_timeout_ms", &L::header_timeout_ms, kPositiveU32),
      leaf<L>("body_timeout_ms", &L::body_timeout_ms, kPositiveU32),
      leaf<L>("idle_timeout_ms", &L::idle_timeout_ms, kPositiveU32),
      leaf<L>("max_connections", &L::max_connections, kPositiveU32),
      leaf<L>("max_unauthenticated_body_bytes", &L::max_unauthenticated_body_bytes,
              Integer{kMinUnauthenticatedBody, kMaxUnauthenticatedBody}),
  };
  return section;
}

const Section<Jwt>& jwt_settings() {
  using J = Jwt;
  static const Section<J> section = {
      leaf<J>("jwks_file", &J::jwks_file, OptionalText{}, {.env = "FBR_JWT_JWKS_FILE"}),
      leaf<J>("jwks_url", &J::jwks_url, kOptionalHttpUrl, {.env = "FBR_JWT_JWKS_URL"}),
      leaf<J>("issuer", &J::issuer, OptionalText{},
              {.env = "FBR_JWT_ISSUER", .default_note = "required with jwt"}),
      leaf<J>("audience", &J::audience, OptionalText{},
              {.env = "FBR_JWT_AUDIENCE", .default_note = "required with jwt"}),
      leaf<J>("algorithms", &J::algorithms, Choices{kJwsAlgorithms}, {.default_note = "all six"}),
      leaf<J>("leeway_s", &J::leeway_s, Integer{0, 3600}),
      leaf<J>("required_scope", &J::required_scope, OptionalText{}),
      leaf<J>("jwks_refresh_s", &J::jwks_refresh_s, Integer{1, 7 * 86'400}),
  };
  return section;
}

const Section<OAuthServer>& oauth_server_settings() {
  using O = OAuthServer;
  static const Section<O> section = {
      leaf<O>("clients", &O::clients, OAuthClients{}),
      leaf<O>("signing_key_file", &O::signing_key_file, Files{},
              {.default_note = "generated in data_dir"}),
      leaf<O>("token_ttl_s", &O::token_ttl_s, Integer{1, 86'400}),
  };
  return section;
}

const Section<DownloadAuth>& download_auth_settings() {
  using A = DownloadAuth;
  static const Section<A> section = {
      leaf<A>("type", &A::type, kAuthType),
      leaf<A>("token_url", &A::token_url, kOptionalHttpUrl),
      leaf<A>("fhir_base_url", &A::fhir_base_url, kOptionalHttpUrl),
      leaf<A>("client_id", &A::client_id, OptionalText{}),
      leaf<A>("private_key_file", &A::private_key_file, Files{}),
      leaf<A>("kid", &A::kid, OptionalText{}),
      leaf<A>("alg", &A::alg, kJwsAlgorithm),
      leaf<A>("scope", &A::scope, Text{}),
      leaf<A>("jku", &A::jku, kOptionalHttpUrl),
      leaf<A>("client_secret_env", &A::client_secret_env, kEnvName),
  };
  return section;
}

const Section<DownloadAttachments>& download_attachments_settings() {
  using A = DownloadAttachments;
  static const Section<A> section = {
      leaf<A>("mode", &A::mode, Choice{kAttachmentModes}),
      leaf<A>("types", &A::types, StringsOrNull{}),
      leaf<A>("max_bytes", &A::max_bytes, Integer{1, kMaxI64}),
      leaf<A>("max_count", &A::max_count, Integer{1, kMaxI64}),
  };
  return section;
}

/// `handlers`: read after every other key (a handler's retry defaults to the top-level retry),
/// by read_handlers; written one object per handler.
Setting<Config> handlers_setting() {
  Setting<Config> s{"handlers", {}, {}, {}, {}, {}};
  s.read = [](Reader&, const Value&, const std::string&, Config&, const Config&) {};
  s.apply_env = [](const Environment&, Config&, std::vector<std::string>&) {};
  s.write = [](PrettyWriter& w, const Config& config, const Config&) {
    w.StartArray();
    for (const auto& handler : config.handlers)
      write_handler(w, handler, config);
    w.EndArray();
  };
  s.document = [](const std::string& path, const Config&, const Config&,
                  std::vector<SettingDoc>& out) {
    out.push_back({path, "", "", "[]", false, ""});
  };
  return s;
}

const Section<core::WhenFilter>& when_settings() {
  using W = core::WhenFilter;
  static const Section<W> section = {
      leaf<W>("status", &W::status, Statuses{}),
      leaf<W>("test", &W::test, OptionalBoolean{}),
      leaf<W>("resource_types", &W::resource_types, StringsOrNull{}),
      leaf<W>("source_id", &W::source_id, OptionalText{}),
      leaf<W>("destination_id", &W::destination_id, OptionalText{}),
  };
  return section;
}

/// A handler's `retry`: each key not given is the top-level retry's.
Setting<Handler> handler_retry_setting() {
  Setting<Handler> s{"retry", {}, {}, {}, {}, {}};
  s.read = [](Reader& r, const Value& v, const std::string& path, Handler& handler,
              const Config& root) {
    core::RetryPolicy retry = root.retry;
    read_members(r, v, path, retry_settings(), retry, root);
    check_retry(r, path, retry, v.IsObject() && !v.HasMember("max_backoff_ms"));
    handler.retry = retry;
  };
  s.apply_env = [](const Environment&, Handler&, std::vector<std::string>&) {};
  s.write = [](PrettyWriter& w, const Handler& handler, const Config& root) {
    w.StartObject();
    write_members(w, retry_settings(), handler.retry.value_or(root.retry), root);
    w.EndObject();
  };
  s.document = [](const std::string& path, const Handler& defaults, const Config& root,
                  std::vector<SettingDoc>& out) {
    document(retry_settings(), path, defaults.retry.value_or(root.retry), root, out);
  };
  return s;
}

}  // namespace

std::span<const std::string_view> handler_types() {
  return kHandlerTypes;
}

const Section<core::RetryPolicy>& retry_settings() {
  using R = core::RetryPolicy;
  static const Section<R> section = {
      leaf<R>("max_attempts", &R::max_attempts, Integer{1, kMaxI32}),
      leaf<R>("initial_backoff_ms", &R::initial_backoff_ms, Integer{1, kMaxI64}),
      leaf<R>("max_backoff_ms", &R::max_backoff_ms, Integer{1, kMaxI64}),
  };
  return section;
}

const Section<Config>& config_settings() {
  using C = Config;
  static const Section<C> section = {
      leaf<C>("listen", &C::listen, ListenAddress{}, {.env = "FBR_LISTEN"}),
      leaf<C>("path", &C::path, kWebhookPath, {.env = "FBR_PATH"}),
      leaf<C>("verification_tokens", &C::verification_tokens, Tokens{},
              {.env = "FBR_VERIFICATION_TOKEN",
               .default_note = "required without jwt or oauth_server"}),
      group<C>("jwt", &C::jwt, jwt_settings()),
      group<C>("oauth_server", &C::oauth_server, oauth_server_settings()),
      leaf<C>("data_dir", &C::data_dir, Text{}, {.env = "FBR_DATA_DIR"}),
      leaf<C>("max_body_bytes", &C::max_body_bytes, Integer{1, kMaxU64},
              {.env = "FBR_MAX_BODY_BYTES"}),
      leaf<C>("invalid_payloads", &C::invalid_payloads, Enum<InvalidPayloads>{kInvalidPayloads},
              {.env = "FBR_INVALID_PAYLOADS"}),
      group<C>("tls", &C::tls, tls_settings()),
      group<C>("admin", &C::admin, admin_settings()),
      group<C>("log", &C::log, log_settings()),
      group<C>("retry", &C::retry, retry_settings()),
      group<C>("journal", &C::journal, journal_settings()),
      group<C>("dispatch", kSelf, dispatch_settings()),
      group<C>("limits", &C::limits, limits_settings()),
      handlers_setting(),
  };
  return section;
}

const Section<Handler>& handler_settings() {
  using H = Handler;
  static const Section<H> section = {
      leaf<H>("name", &H::name, kHandlerName),
      leaf<H>("type", &H::type, Choice{kHandlerTypes}),
      group<H>("when", &H::when, when_settings()),
      handler_retry_setting(),
      leaf<H>("concurrency", &H::concurrency, kConcurrency,
              {.default_note = "dispatch.concurrency - 1"}),
  };
  return section;
}

template <>
const Section<FileHandler>& type_settings<FileHandler>() {
  static const Section<FileHandler> section = {
      leaf<FileHandler>("dir", &FileHandler::dir, OptionalText{}),
      leaf<FileHandler>("path", &FileHandler::path, OptionalText{}),
  };
  return section;
}

template <>
const Section<ExecHandler>& type_settings<ExecHandler>() {
  using E = ExecHandler;
  static const Section<E> section = {
      leaf<E>("command", &E::command, Argv{}, {.required = true}),
      leaf<E>("timeout_ms", &E::timeout_ms, kPositiveU32),
      leaf<E>("env", &E::env, LiteralsOrEnv{}),
  };
  return section;
}

template <>
const Section<HttpHandler>& type_settings<HttpHandler>() {
  using H = HttpHandler;
  static const Section<H> section = {
      leaf<H>("url", &H::url, kHttpUrl, {.required = true}),
      leaf<H>("headers", &H::headers, LiteralsOrEnv{.headers = true}),
      leaf<H>("timeout_ms", &H::timeout_ms, kPositiveU32),
  };
  return section;
}

template <>
const Section<DownloadHandler>& type_settings<DownloadHandler>() {
  using D = DownloadHandler;
  static const Section<D> section = {
      leaf<D>("dir", &D::dir, Text{}, {.required = true}),
      leaf<D>("parallel", &D::parallel, Integer{1, 64}),
      group<D>("auth", &D::auth, download_auth_settings()),
      leaf<D>("token_env", &D::token_env, kEnvName),
      leaf<D>("token_file", &D::token_file, OptionalText{}),
      leaf<D>("token_command", &D::token_command, Argv{.nullable = true}),
      leaf<D>("token_command_env", &D::token_command_env, LiteralsOrEnv{}),
      leaf<D>("store", &D::store, Choice{kStores}),
      leaf<D>("connect_timeout_ms", &D::connect_timeout_ms, kPositiveU32),
      leaf<D>("idle_timeout_ms", &D::idle_timeout_ms, kPositiveU32),
      leaf<D>("min_speed_bytes_per_s", &D::min_speed_bytes_per_s, kPositiveU32),
      leaf<D>("min_speed_window_s", &D::min_speed_window_s, Integer{1, 86'400}),
      leaf<D>("max_files", &D::max_files, Integer{1, 1'000'000}),
      leaf<D>("transfer_attempts", &D::transfer_attempts, Integer{1, 100}),
      leaf<D>("max_retry_wait_ms", &D::max_retry_wait_ms, Integer{0, kMaxU32}),
      leaf<D>(
          "allowed_hosts", [](auto& d) -> auto& { return d.egress.allowed_hosts; }, HostPatterns{}),
      leaf<D>(
          "allow_private_addresses",
          [](auto& d) -> auto& { return d.egress.allow_private_addresses; }, Boolean{}),
      leaf<D>(
          "token_hosts", [](auto& d) -> auto& { return d.egress.token_hosts; },
          Nullable<HostPatterns>{}),
      leaf<D>("max_file_bytes", &D::max_file_bytes, Integer{1, kMaxI64}),
      leaf<D>("max_event_bytes", &D::max_event_bytes, Integer{1, kMaxI64}),
      leaf<D>("max_decompression_ratio", &D::max_decompression_ratio, Integer{1, 1'000'000}),
      leaf<D>("min_free_bytes", &D::min_free_bytes, Nullable<Integer>{{0, kMaxI64}}),
      group_or_shorthand<D>("attachments", &D::attachments, download_attachments_settings(),
                            "mode"),
  };
  return section;
}

template <>
const Section<NatsHandler>& type_settings<NatsHandler>() {
  using N = NatsHandler;
  static const Section<N> section = {
      leaf<N>("servers", &N::servers, Servers{}, {.required = true}),
      leaf<N>("subject", &N::subject, Text{}, {.required = true}),
      leaf<N>("stream", &N::stream, OptionalText{}),
      leaf<N>("credentials_file", &N::credentials_file, OptionalText{}),
  };
  return section;
}

}  // namespace fbr::config::detail

namespace fbr::config {

std::vector<SettingDoc> setting_docs() {
  using namespace detail;
  const Config defaults;
  std::vector<SettingDoc> docs;
  document(config_settings(), "", defaults, defaults, docs);
  document(handler_settings(), "handlers[]", Handler{}, defaults, docs);
  for_each_handler_type([&]<class H>(std::in_place_type_t<H>, std::string_view type) {
    const std::size_t first = docs.size();
    document(type_settings<H>(), "handlers[]", H{}, defaults, docs);
    for (std::size_t i = first; i < docs.size(); ++i)
      docs[i].handler_type = std::string(type);
  });
  return docs;
}

}  // namespace fbr::config
