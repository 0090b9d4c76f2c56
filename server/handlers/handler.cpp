#include "server/handlers/handler.hpp"

#include <exception>
#include <stdexcept>
#include <type_traits>
#include <variant>

#include "core/text.hpp"
#include "server/handlers/download/handler.hpp"
#include "server/handlers/exec_handler.hpp"
#include "server/handlers/file_handler.hpp"
#include "server/handlers/http_handler.hpp"
#include "server/handlers/nats_handler.hpp"

namespace fbr::server {
namespace {

// Longer Log IDs are hashed: <stem>.json plus exec's ".<random>" suffix must fit NAME_MAX (255).
constexpr std::size_t kMaxStemLength = 128;

// Hashed names start with this. A key that starts with it (in any case: a volume may fold case) is
// hashed too, so a literal Log ID "sha256-<hex>" cannot name the folder of another event.
constexpr std::string_view kHashPrefix = "sha256-";

bool starts_with_hash_prefix(std::string_view key) {
  if (key.size() < kHashPrefix.size()) return false;
  for (std::size_t i = 0; i < kHashPrefix.size(); ++i) {
    const char c = key[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kHashPrefix[i]) return false;
  }
  return true;
}

bool is_file_name_safe(std::string_view key) {
  if (key.empty() || key.size() > kMaxStemLength || key.front() == '.') return false;
  if (starts_with_hash_prefix(key)) return false;
  for (const char c : key) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Outcome Handler::deliver(const Delivery& delivery) {
  const auto started = std::chrono::steady_clock::now();
  Outcome outcome;
  try {
    outcome = run(delivery);
  } catch (const std::exception& e) {
    outcome = Outcome::retry(e.what());
  } catch (...) {
    outcome = Outcome::retry("unknown error");
  }
  const double duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  try {
    Fields fields = log_.fields();
    fields.add("log_id", core::log_id_or_key(delivery.log_id, delivery.event_key))
        .add("attempt_id", delivery.attempt_id)
        .add("handler", name_)
        .add("attempt", delivery.attempt)
        .add("outcome", to_string(outcome.kind))
        .add("duration_ms", duration_ms);
    if (outcome.kind != Outcome::Kind::kDone) {
      fields.add("error", outcome.message);
      if (outcome.retry_after) {
        fields.add("retry_after_ms", static_cast<std::int64_t>(outcome.retry_after->count()));
      }
      log_.warn("delivery", fields);
    } else {
      log_.info("delivery", fields);
    }
  } catch (...) {
    // Logging must not turn a delivered event into a failure (deliver never throws).
  }
  return outcome;
}

std::string file_stem(std::string_view event_key) {
  if (is_file_name_safe(event_key)) return std::string(event_key);
  return std::string(kHashPrefix) + core::sha256_hex(event_key);
}

std::unique_ptr<Handler> make_handler(const config::Handler& config,
                                      const std::filesystem::path& data_dir, const Logger& log) {
  return std::visit(
      [&](const auto& settings) -> std::unique_ptr<Handler> {
        using T = std::decay_t<decltype(settings)>;
        if constexpr (std::is_same_v<T, config::FileHandler>) {
          return std::make_unique<FileHandler>(config.name, settings, log);
        } else if constexpr (std::is_same_v<T, config::ExecHandler>) {
          return std::make_unique<ExecHandler>(config.name, settings, data_dir, log);
        } else if constexpr (std::is_same_v<T, config::HttpHandler>) {
          return std::make_unique<HttpHandler>(config.name, settings, log);
        } else if constexpr (std::is_same_v<T, config::DownloadHandler>) {
          return std::make_unique<DownloadHandler>(config.name, settings, log);
        } else if constexpr (std::is_same_v<T, config::NatsHandler>) {
          return std::make_unique<NatsHandler>(config.name, settings, log);
        } else {
          throw std::runtime_error("handler " + config.name + ": type " + config.type +
                                   " is not available yet");
        }
      },
      config.settings);
}

std::optional<std::string> build_routes(const config::Config& config, const Logger& log,
                                        Routes& routes) {
  for (const auto& h : config.handlers) {
    try {
      routes[h.name] = std::make_shared<Route>(
          Route{make_handler(h, config.data_dir, log), h.retry.value_or(config.retry),
                // 0 only in a Config built by hand (tests): no cap below the pool's
                h.concurrency > 0 ? h.concurrency : config.dispatch_concurrency});
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  }
  return std::nullopt;
}

}  // namespace fbr::server
