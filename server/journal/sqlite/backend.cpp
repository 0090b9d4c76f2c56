#include "server/journal/sqlite/backend.hpp"

#include "server/journal/sqlite/dispatcher.hpp"
#include "server/journal/sqlite/events.hpp"

namespace fbr::server {

std::optional<OpenError> SqliteBackend::open(const Logger& log) {
  journal_ = std::make_unique<SqliteJournal>();
  if (auto error = journal_->open(config_.data_dir)) return OpenError{*error, false};
  if (!journal_->unavailable_reason().empty()) {
    // Serve anyway: answers are 503 (Redox retries) and /readyz says not ready until the disk
    // is writable again; the journal reopens by itself.
    log.error("journal_unavailable", log.fields().add("error", journal_->unavailable_reason()));
  }
  return std::nullopt;
}

std::unique_ptr<Dispatcher> SqliteBackend::make_dispatcher(Metrics& metrics, const Logger& log) {
  return std::make_unique<SqliteDispatcher>(config_, *journal_, metrics, log);
}

std::vector<std::pair<std::string, std::string>> SqliteBackend::location() const {
  return {{"data_dir", config_.data_dir.string()}};
}

std::vector<EventRow> SqliteBackend::list_events(const std::string& log_id, int limit,
                                                 std::string& error) {
  return fbr::server::list_events(config_.data_dir, log_id, limit, error);
}

std::vector<std::string> SqliteBackend::replay(const std::string& log_id,
                                               const std::string& handler, std::string& error) {
  std::vector<std::string> configured;
  for (const auto& h : config_.handlers)
    configured.push_back(h.name);
  return replay_deliveries(config_.data_dir, log_id, handler, configured, error);
}

std::string SqliteBackend::replayed(std::string_view log_id, std::string_view handler) const {
  return "re-queued " + std::string(log_id) + " for handler " + std::string(handler);
}

std::string_view SqliteBackend::after_replay() const {
  return "a running server picks them up within a second; otherwise they run at its next start";
}

}  // namespace fbr::server
