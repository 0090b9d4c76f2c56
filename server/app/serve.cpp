// `serve`: the service itself (the journal the configuration names, the HTTP listener, the
// dispatcher running the handlers) and its reload on SIGHUP.
#include <sys/stat.h>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <memory>
#include <thread>

#include "core/url.hpp"
#include "server/admin/admin_server.hpp"
#include "server/app/commands.hpp"
#include "server/http/auth.hpp"
#include "server/http/listener.hpp"
#include "server/journal/backend.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {
namespace {

/// SIGHUP: re-read the config file; apply tokens, handlers, invalid_payloads, log level and the
/// TLS certificate; keep everything else (listen, path, data_dir, journal, limits) until a
/// restart. An invalid new config changes nothing.
void reload(const config::Config& startup, LiveConfig& live, LiveAuth& auth, Dispatcher& dispatcher,
            Listener& server, Logger& log) {
  auto loaded = config::load_config(startup.source_file, config::process_environment());
  if (!loaded.ok()) {
    std::string errors;
    for (const auto& e : loaded.errors)
      errors += (errors.empty() ? "" : "; ") + e;
    log.error("reload_refused", log.fields().add("errors", errors));
    return;
  }
  config::Config next = std::move(*loaded.config);
  std::vector<std::string> kept;
  auto keep = [&](auto& field, const auto& old, const char* key) {
    if (!(field == old)) kept.emplace_back(key);
    field = old;
  };
  keep(next.listen.host, startup.listen.host, "listen");
  keep(next.listen.port, startup.listen.port, "listen");
  keep(next.path, startup.path, "path");
  keep(next.admin.listen, startup.admin.listen, "admin.listen");
  keep(next.admin.session_ttl_s, startup.admin.session_ttl_s, "admin.session_ttl_s");
  keep(next.data_dir, startup.data_dir, "data_dir");
  keep(next.max_body_bytes, startup.max_body_bytes, "max_body_bytes");
  keep(next.journal.backend, startup.journal.backend, "journal");
  keep(next.journal.nats.servers, startup.journal.nats.servers, "journal");
  keep(next.journal.nats.stream, startup.journal.nats.stream, "journal");
  keep(next.journal.nats.subject, startup.journal.nats.subject, "journal");
  keep(next.journal.nats.replicas, startup.journal.nats.replicas, "journal");
  keep(next.journal.nats.credentials_file, startup.journal.nats.credentials_file, "journal");
  keep(next.journal.nats.duplicate_window_s, startup.journal.nats.duplicate_window_s, "journal");
  keep(next.journal.nats.token_env, startup.journal.nats.token_env, "journal");
  keep(next.dispatch_concurrency, startup.dispatch_concurrency, "dispatch.concurrency");
  keep(next.limits.max_header_bytes, startup.limits.max_header_bytes, "limits");
  keep(next.limits.header_timeout_ms, startup.limits.header_timeout_ms, "limits");
  keep(next.limits.body_timeout_ms, startup.limits.body_timeout_ms, "limits");
  keep(next.limits.idle_timeout_ms, startup.limits.idle_timeout_ms, "limits");
  keep(next.limits.max_connections, startup.limits.max_connections, "limits");
  if (next.tls.enabled() != startup.tls.enabled() ||
      next.admin.tls.enabled() != startup.admin.tls.enabled()) {
    log.error("reload_refused",
              log.fields().add("errors", "tls: turning HTTPS on or off needs a restart"));
    return;
  }
  if (auto error = server.reload_tls(next.tls)) {
    log.error("reload_refused", log.fields().add("errors", *error));
    return;
  }
  // Tokens, JWT rules, token endpoint clients and keys: built before anything is applied, so a
  // bad key file or an unset secret variable refuses the whole reload.
  std::shared_ptr<const Authenticator> next_auth;
  try {
    next_auth = Authenticator::build(next, log, auth.get().get());
  } catch (const std::exception& e) {
    log.error("reload_refused", log.fields().add("errors", e.what()));
    return;
  }
  if (auto error = dispatcher.reload(next)) {
    log.error("reload_refused", log.fields().add("errors", *error));
    return;
  }
  log.set_level(next.log.level);
  const auto tokens = static_cast<std::int64_t>(next.verification_tokens.size());
  const auto handlers = static_cast<std::int64_t>(next.handlers.size());
  live.set(std::make_shared<const config::Config>(std::move(next)));
  // The old one's JWKS thread (unless the new one kept it) ends when its last request is done.
  auth.set(std::move(next_auth));
  std::string restart_needed;
  for (const auto& k : kept) {
    if (restart_needed.find(k) == std::string::npos)
      restart_needed += (restart_needed.empty() ? "" : ",") + k;
  }
  auto fields = log.fields().add("tokens", tokens).add("handlers", handlers);
  if (!restart_needed.empty()) fields.add("unchanged_until_restart", restart_needed);
  log.info("reloaded", fields);
}

}  // namespace

int serve(const config::Config& config) {
  // Everything the service writes (journal, quarantine, downloads) is for its owner only: the
  // payloads are protected health information.
  ::umask(077);
  std::signal(SIGPIPE, SIG_IGN);
  Logger log(config.log);
  auto fail = [&](const std::string& error, int status) {
    log.error("start_failed", log.fields().add("error", error));
    std::cerr << "fhir-bulk-receiver: " << error << "\n";
    return status;
  };
  const auto backend = make_backend(config);
  if (auto error = backend->open(log)) {
    return fail(error->message, error->settings ? kExitUsage : kExitFailure);
  }
  Metrics metrics;
  LiveConfig live(config);
  std::shared_ptr<const Authenticator> authenticator;
  try {
    authenticator = Authenticator::build(config, log);
  } catch (const std::exception& e) {
    return fail(e.what(), kExitUsage);
  }
  LiveAuth auth(std::move(authenticator));
  Listener server(config, live, auth, backend->journal(), metrics, log);
  if (auto error = server.listen()) return fail(*error, kExitUsage);
  // Handlers run from the journal: the SQLite dispatcher's delivery rows, or the NATS
  // dispatcher's durable consumers on the stream.
  const auto dispatcher = backend->make_dispatcher(metrics, log);
  if (auto error = dispatcher->start()) return fail(*error, kExitUsage);
  // The console, /metrics and the detailed readiness, on a listener of their own (admin.listen).
  std::unique_ptr<AdminServer> admin;
  if (config.admin.enabled()) {
    admin = std::make_unique<AdminServer>(config, live, *backend, metrics, log);
    if (auto error = admin->listen()) return fail(*error, kExitUsage);
  }
  server.on_reload([&] {
    reload(config, live, auth, *dispatcher, server, log);
    if (admin) {
      if (auto error = admin->reload_tls(*live.get())) {
        log.error("reload_refused", log.fields().add("errors", *error));
      }
    }
  });
  auto fields = log.fields()
                    .add("address", core::host_port(config.listen.host, server.port()))
                    .add("port", static_cast<int>(server.port()))
                    .add("path", config.path)
                    .add("journal", config.journal.backend);
  for (const auto& [name, value] : backend->location())
    fields.add(name, value);
  // Which ways in are open, so an operator sees at start what Redox must send (no secret: names).
  std::string auth_methods;
  for (const auto& [on, name] :
       {std::pair{!config.verification_tokens.empty(), "verification_tokens"},
        std::pair{config.jwt.enabled(), "jwt"},
        std::pair{config.oauth_server.enabled(), "oauth_server"}}) {
    if (on) auth_methods += (auth_methods.empty() ? "" : ",") + std::string(name);
  }
  fields.add("auth", auth_methods)
      .add("tls", config.tls.enabled())
      .add("handlers", static_cast<std::int64_t>(config.handlers.size()))
      .add("version", FBR_VERSION);
  if (admin) {
    fields.add("admin", core::host_port(config.admin.listen->host, admin->port()));
    admin->start();
  }
  log.info("listening", fields);
  // Half the cores run the io_context (one on 2 cores: about 10 % less CPU per request than two,
  // measured with bench/cpu_per_request.sh); the rest is for the journal writer and the kernel.
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency() / 2);
  server.run(threads, std::chrono::seconds(10));
  if (admin) admin->stop();
  auth.get()->stop();  // the JWKS URL's refresh thread
  // The dispatcher first: a running delivery records its outcome in the journal still open.
  dispatcher->stop();
  backend->journal().stop();
  log.info("stopped", log.fields());
  return kExitOk;
}

}  // namespace fbr::server
