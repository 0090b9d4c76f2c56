#include "server/app/commands.hpp"

#include <curl/curl.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "core/event.hpp"
#include "core/text.hpp"
#include "server/http/listener.hpp"
#include "server/journal/nats/dispatcher.hpp"
#include "server/journal/nats/events.hpp"
#include "server/journal/nats/journal.hpp"
#include "server/journal/sqlite/dispatcher.hpp"
#include "server/journal/sqlite/journal.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {
namespace {

/// Reads a whole file, or standard input for "-". nullopt (and a message on stderr) on failure.
std::optional<std::string> read_input(const std::string& file) {
  if (file == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::cerr << "fhir-bulk-receiver: cannot read " << file << ": " << std::strerror(errno) << "\n";
    return std::nullopt;
  }
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

std::string host_port(const config::Listen& listen) {
  bool v6 = listen.host.find(':') != std::string::npos;
  return (v6 ? "[" + listen.host + "]" : listen.host) + ":" + std::to_string(listen.port);
}

/// SIGHUP: re-read the config file; apply tokens, handlers, invalid_payloads, log level and the
/// TLS certificate; keep everything else (listen, path, data_dir, journal, limits) until a
/// restart. An invalid new config changes nothing.
void reload(const config::Config& startup, LiveConfig& live,
            const std::function<std::optional<std::string>(const config::Config&)>& reload_handlers,
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
  if (next.tls.enabled() != startup.tls.enabled()) {
    log.error("reload_refused",
              log.fields().add("errors", "tls: turning HTTPS on or off needs a restart"));
    return;
  }
  if (auto error = server.reload_tls(next.tls)) {
    log.error("reload_refused", log.fields().add("errors", *error));
    return;
  }
  if (auto error = reload_handlers(next)) {
    log.error("reload_refused", log.fields().add("errors", *error));
    return;
  }
  log.set_level(next.log.level);
  const auto tokens = static_cast<std::int64_t>(next.verification_tokens.size());
  const auto handlers = static_cast<std::int64_t>(next.handlers.size());
  live.set(std::make_shared<const config::Config>(std::move(next)));
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
  const bool nats = config.journal.backend == "nats";
  std::unique_ptr<Journal> journal;
  std::unique_ptr<NatsStore> nats_store;
  EventStore* store = nullptr;
  if (nats) {
    nats_store = std::make_unique<NatsStore>(config.journal.nats, config.max_body_bytes, log);
    if (auto error = nats_store->open()) return fail(*error, kExitUsage);
    store = nats_store.get();
  } else {
    journal = std::make_unique<Journal>();
    if (auto error = journal->open(config.data_dir)) return fail(*error, kExitFailure);
    if (!journal->unavailable_reason().empty()) {
      // Serve anyway: answers are 503 (Redox retries) and /readyz says not ready until the disk
      // is writable again; the journal reopens by itself.
      log.error("journal_unavailable", log.fields().add("error", journal->unavailable_reason()));
    }
    store = journal.get();
  }
  Metrics metrics;
  LiveConfig live(config);
  Listener server(config, live, *store, metrics, log);
  if (auto error = server.listen()) return fail(*error, kExitUsage);
  // Handlers run from the journal: the SQLite dispatcher's delivery rows, or the NATS
  // dispatcher's durable consumers on the stream.
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<NatsDispatcher> nats_dispatcher;
  std::function<std::optional<std::string>(const config::Config&)> reload_handlers;
  if (nats) {
    nats_dispatcher = std::make_unique<NatsDispatcher>(config, metrics, log);
    if (auto error = nats_dispatcher->start()) return fail(*error, kExitUsage);
    reload_handlers = [&](const config::Config& next) { return nats_dispatcher->reload(next); };
  } else {
    dispatcher = std::make_unique<Dispatcher>(config, *journal, metrics, log);
    if (auto error = dispatcher->start()) return fail(*error, kExitUsage);
    reload_handlers = [&](const config::Config& next) { return dispatcher->reload(next); };
  }
  server.on_reload([&] { reload(config, live, reload_handlers, server, log); });
  config::Listen bound = config.listen;
  bound.port = server.port();
  auto fields = log.fields()
                    .add("address", host_port(bound))
                    .add("port", static_cast<int>(server.port()))
                    .add("path", config.path)
                    .add("journal", config.journal.backend);
  if (nats) {
    fields.add("stream", config.journal.nats.stream).add("subject", config.journal.nats.subject);
  } else {
    fields.add("data_dir", config.data_dir.string());
  }
  fields.add("tls", config.tls.enabled())
      .add("handlers", static_cast<std::int64_t>(config.handlers.size()))
      .add("version", FBR_VERSION);
  log.info("listening", fields);
  // Half the cores run the io_context (one on 2 cores: about 10 % less CPU per request than two,
  // measured with bench/cpu_per_request.sh); the rest is for the journal writer and the kernel.
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency() / 2);
  server.run(threads, std::chrono::seconds(10));
  if (dispatcher) dispatcher->stop();
  if (nats_dispatcher) nats_dispatcher->stop();
  store->stop();
  log.info("stopped", log.fields());
  return kExitOk;
}

int check_config(const config::Config& config) {
  std::cout << config::to_redacted_json(config) << "\n";
  std::cerr << "configuration ok";
  if (!config.source_file.empty()) std::cerr << ": " << config.source_file.string();
  std::cerr << "\n";
  return kExitOk;
}

int validate(const std::vector<std::string>& files) {
  int status = kExitOk;
  for (const auto& file : files) {
    auto body = read_input(file);
    if (!body) {
      status = kExitFailure;
      continue;
    }
    auto result = core::parse_event(*body);
    const std::string name = file == "-" ? "<stdin>" : file;
    if (result.ok()) {
      std::cout << name << ": valid (event key " << core::printable(result.event->key) << ")\n";
    } else {
      status = kExitFailure;
      std::cout << name << ": invalid, " << result.errors.size()
                << (result.errors.size() == 1 ? " error" : " errors") << "\n";
    }
    for (const auto& e : result.errors) {
      std::cout << "  error   " << core::printable(e.path.empty() ? "/" : e.path) << ": "
                << core::printable(e.message) << "\n";
    }
    for (const auto& w : result.warnings) {
      std::cout << "  warning " << core::printable(w.path.empty() ? "/" : w.path) << ": "
                << core::printable(w.message) << "\n";
    }
  }
  return status;
}

namespace {

std::size_t append_to_string(char* data, std::size_t size, std::size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

int send(const std::string& url, const std::string& token, const std::string& file) {
  auto body = read_input(file);
  if (!body) return kExitFailure;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  struct curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  std::string token_header = "verification-token: " + token;
  if (!token.empty()) headers = curl_slist_append(headers, token_header.c_str());
  std::string response;
  std::string user_agent = std::string("fhir-bulk-receiver-send/") + FBR_VERSION;
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_POST, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body->data());
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 60L);
  CURLcode rc = curl_easy_perform(curl.get());
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    std::cerr << "fhir-bulk-receiver: cannot send to " << url << ": " << curl_easy_strerror(rc)
              << "\n";
    return kExitFailure;
  }
  long code = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &code);
  // The answer is the server's (or whatever answered there): shown line by line, escaped, so the
  // terminal never obeys it.
  std::cout << code << "\n";
  std::string_view rest(response);
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('\n'), rest.size());
    std::cout << core::printable(rest.substr(0, end)) << "\n";
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  return code >= 200 && code < 300 ? kExitOk : kExitFailure;
}

int events(const config::Config& config, const std::string& log_id, int limit, bool json) {
  std::string error;
  auto rows = config.journal.backend == "nats" ? list_nats_events(config, log_id, limit, error)
                                               : list_events(config.data_dir, log_id, limit, error);
  if (!error.empty()) {
    std::cerr << "fhir-bulk-receiver: " << core::printable(error) << "\n";
    return kExitFailure;
  }
  if (json) {
    rapidjson::StringBuffer buffer;
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buffer);
    w.SetIndent(' ', 2);
    w.StartArray();
    for (const auto& row : rows) {
      w.StartObject();
      w.Key("key");
      w.String(row.key);
      w.Key("logId");
      w.String(row.log_id);
      w.Key("status");
      w.Int(row.status);
      w.Key("receivedAt");
      w.String(row.received_at);
      w.Key("outputCount");
      w.Int64(row.output_count);
      w.Key("attempts");
      w.StartArray();
      for (const auto& a : row.attempts) {
        w.StartObject();
        w.Key("attemptId");
        w.String(a.attempt_id);
        w.Key("receivedAt");
        w.String(a.received_at);
        w.Key("remoteAddr");
        w.String(a.remote_addr);
        w.Key("requestId");
        w.String(a.request_id);
        w.Key("duplicate");
        w.Bool(a.duplicate);
        w.EndObject();
      }
      w.EndArray();
      w.Key("deliveries");
      w.StartArray();
      for (const auto& d : row.deliveries) {
        w.StartObject();
        w.Key("handler");
        w.String(d.handler);
        w.Key("state");
        w.String(d.state);
        w.Key("attempts");
        w.Int(d.attempts);
        w.Key("nextAttemptAt");
        w.Int64(d.next_attempt_at_ms);
        w.Key("lastError");
        w.String(d.last_error);
        w.Key("updatedAt");
        w.String(d.updated_at);
        w.EndObject();
      }
      w.EndArray();
      w.EndObject();
    }
    w.EndArray();
    std::cout << buffer.GetString() << "\n";
    return kExitOk;
  }
  if (rows.empty()) {
    std::cout << (log_id.empty() ? "no events journaled yet\n" : "no event with that Log ID\n");
    return log_id.empty() ? kExitOk : kExitFailure;
  }
  std::printf("%-24s  %-6s  %-7s  %-8s  %-20s  %s\n", "RECEIVED", "STATUS", "OUTPUTS", "ATTEMPTS",
              "DELIVERIES", "LOG ID");
  for (const auto& row : rows) {
    std::map<std::string, int> states;
    for (const auto& d : row.deliveries)
      ++states[d.state];
    std::string summary;
    for (const auto& [state, n] : states) {
      summary += (summary.empty() ? "" : ",") + std::to_string(n) + " " + state;
    }
    if (summary.empty()) summary = "-";
    // Every field comes from the journal, so from outside: printed escaped (an escape sequence in
    // a Log ID must not clear the operator's screen, a newline must not forge a row).
    const auto show = [](std::string_view text) { return core::printable(text); };
    std::printf("%-24s  %-6d  %-7lld  %-8zu  %-20s  %s\n", show(row.received_at).c_str(),
                row.status, static_cast<long long>(row.output_count), row.attempts.size(),
                show(summary).c_str(), show(row.log_id.empty() ? row.key : row.log_id).c_str());
    for (const auto& d : row.deliveries) {
      std::printf("  delivery %-16s %-8s attempts %d%s%s\n", show(d.handler).c_str(),
                  show(d.state).c_str(), d.attempts, d.last_error.empty() ? "" : "  last error: ",
                  show(std::string_view(d.last_error).substr(0, 200)).c_str());
    }
    if (!log_id.empty()) {
      for (const auto& a : row.attempts) {
        std::printf("  attempt %s  at %s  from %s  request %s%s\n", show(a.attempt_id).c_str(),
                    show(a.received_at).c_str(), show(a.remote_addr).c_str(),
                    show(a.request_id).c_str(), a.duplicate ? "  (duplicate)" : "");
      }
    }
  }
  return kExitOk;
}

int replay(const config::Config& config, const std::string& log_id, const std::string& handler) {
  std::vector<std::string> configured;
  for (const auto& h : config.handlers)
    configured.push_back(h.name);
  std::string error;
  const bool nats = config.journal.backend == "nats";
  auto requeued = nats ? replay_nats_event(config, log_id, handler, error)
                       : replay_deliveries(config.data_dir, log_id, handler, configured, error);
  if (!error.empty()) {
    std::cerr << "fhir-bulk-receiver: " << core::printable(error) << "\n";
    return kExitFailure;
  }
  const std::string shown_id = core::printable(log_id);
  if (requeued.empty()) {
    std::cout << "no deliveries to replay for " << shown_id << "\n";
    return kExitFailure;
  }
  for (const auto& requeued_name : requeued) {
    const std::string name = core::printable(requeued_name);
    if (nats) {
      std::cout << "published " << shown_id << " to " << config.journal.nats.subject << ".replay."
                << name << " for handler " << name << "\n";
    } else {
      std::cout << "re-queued " << shown_id << " for handler " << name << "\n";
    }
  }
  std::cout
      << (nats ? "any running receiver's dispatcher picks them up from the stream\n"
               : "a running server picks them up within a second; otherwise they run at its next "
                 "start\n");
  return kExitOk;
}

}  // namespace fbr::server
