#pragma once
// A handler delivers one journaled event somewhere (a file, a command, an HTTP endpoint, ...).
// Handler::deliver is the protocol every handler follows: it times the attempt, turns exceptions
// into failures and logs one line; each type implements only `run`.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/event.hpp"
#include "core/retry.hpp"
#include "server/support/log.hpp"

namespace fbr::server {

/// One attempt at delivering one event to one handler.
struct Delivery {
  std::string event_key;   ///< the journal's key (Log ID or sha256:...)
  std::string log_id;      ///< Meta.Logs[0].ID ("" when absent)
  std::string attempt_id;  ///< the Redox attempt that brought the event
  int status = 0;          ///< 200 or 202
  std::string_view body;   ///< the raw event, exactly as received
  int attempt = 1;         ///< 1-based attempt number of this delivery
  /// `body` parsed once, by the dispatcher that built this delivery: a handler that needs the
  /// model reads it here rather than parsing the body again. Null only in a Delivery built by
  /// hand (tests) for a handler that reads the body alone.
  const core::ParseResult* parsed = nullptr;
};

/// What became of an attempt (core/retry.hpp: the dispatchers' retry decision takes it).
using core::Outcome;
using core::to_string;

class Handler {
 public:
  Handler(std::string name, const Logger& log) : name_(std::move(name)), log_(log) {}
  virtual ~Handler() = default;
  Handler(const Handler&) = delete;
  Handler& operator=(const Handler&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }

  /// Runs one attempt: never throws, logs `delivery log_id=... handler=... attempt=...
  /// outcome=... duration_ms=...`. Safe to call from several threads at once.
  Outcome deliver(const Delivery& delivery);

 protected:
  /// The handler's own work. May throw; may block (it runs on a dispatcher worker thread).
  virtual Outcome run(const Delivery& delivery) = 0;
  [[nodiscard]] const Logger& log() const { return log_; }

 private:
  std::string name_;
  const Logger& log_;
};

/// Builds the handler a config entry describes. `data_dir` is where handlers may keep scratch
/// files (exec's FBR_EVENT_FILE). Throws std::runtime_error with a message naming the handler
/// when it cannot start (e.g. a header's env variable is unset).
std::unique_ptr<Handler> make_handler(const config::Handler& config,
                                      const std::filesystem::path& data_dir, const Logger& log);

/// A built handler with the retry policy that applies to it (its own `retry`, else the config's).
struct Route {
  std::unique_ptr<Handler> handler;
  core::RetryPolicy retry;
  int concurrency = 1;  ///< deliveries of this handler that may run at once (config, effective)
};
/// The handlers of a config by name. Shared: a running delivery keeps its route across a reload.
using Routes = std::map<std::string, std::shared_ptr<Route>>;

/// Builds every handler of `config` into `routes`. Returns the first error (naming the handler):
/// a reload then changes nothing.
std::optional<std::string> build_routes(const config::Config& config, const Logger& log,
                                        Routes& routes);

/// A file-name-safe form of an event key: the Log ID itself when it is made of [A-Za-z0-9._-], at
/// most 128 bytes, and starts neither with a dot nor with "sha256-" (any case); else "sha256-" +
/// hex SHA-256 of the key. So a hashed name is never also some event's literal Log ID.
std::string file_stem(std::string_view event_key);

}  // namespace fbr::server
