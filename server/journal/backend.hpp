#pragma once
// One journal backend (journal.backend): where accepted events are kept (its Journal), how the
// handlers run from them (its Dispatcher) and how the CLI reads and replays them. make_backend
// picks the configured one; nothing outside server/journal/ names a backend.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "server/journal/console.hpp"
#include "server/journal/dispatcher.hpp"
#include "server/journal/journal.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {

/// Why a journal could not be opened.
struct OpenError {
  std::string message;
  /// True when the settings can never work (exit status 2), false for a failure of the machine
  /// (exit status 1).
  bool settings = false;
};

class Backend : public ConsoleStore {
 public:
  Backend() = default;
  ~Backend() override = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // ---- serve ----
  /// Opens the journal for commits. A journal that cannot be written yet (a full disk, no NATS
  /// server) is not an error: it answers 503 until it can, and says so in the log.
  virtual std::optional<OpenError> open(const Logger& log) = 0;
  /// The journal open() opened.
  [[nodiscard]] virtual Journal& journal() = 0;
  /// The dispatcher that runs the handlers from the journal (not started yet). After open().
  virtual std::unique_ptr<Dispatcher> make_dispatcher(Metrics& metrics, const Logger& log) = 0;
  /// Where the journal is, for the `listening` log line: (field, value) pairs.
  [[nodiscard]] virtual std::vector<std::pair<std::string, std::string>> location() const = 0;

  // ---- the CLI: `events` and `replay` (no open() needed; they work while a server runs) ----
  /// Journaled events, newest first; empty `log_id` = all. Error message in `error`.
  virtual std::vector<EventRow> list_events(const std::string& log_id, int limit,
                                            std::string& error) = 0;
  /// Runs the handlers of the event with this Log ID (or key) again: every one it had, or only
  /// `handler` (which must be configured). Returns the handlers; error message in `error`.
  virtual std::vector<std::string> replay(const std::string& log_id, const std::string& handler,
                                          std::string& error) = 0;
  /// What replay did for `handler`, one line for the operator (both arguments printable).
  [[nodiscard]] virtual std::string replayed(std::string_view log_id,
                                             std::string_view handler) const = 0;
  /// What happens next to what replay queued, one line.
  [[nodiscard]] virtual std::string_view after_replay() const = 0;
};

/// The backend `config.journal.backend` names. `config` must outlive it.
std::unique_ptr<Backend> make_backend(const config::Config& config);

}  // namespace fbr::server
