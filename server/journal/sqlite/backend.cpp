#include "server/journal/sqlite/backend.hpp"

#include "server/journal/sqlite/dispatcher.hpp"
#include "server/journal/sqlite/events.hpp"
#include "server/journal/sqlite/journal.hpp"

namespace fbr::server {
namespace {

class SqliteBackend final : public Backend {
 public:
  explicit SqliteBackend(const config::Config& config) : config_(config) {}

  std::optional<OpenError> open(const Logger& log) override {
    journal_ = std::make_unique<SqliteJournal>();
    if (auto error = journal_->open(config_.data_dir)) return OpenError{*error, false};
    if (!journal_->unavailable_reason().empty()) {
      // Serve anyway: answers are 503 (Redox retries) and /readyz says not ready until the disk
      // is writable again; the journal reopens by itself.
      log.error("journal_unavailable", log.fields().add("error", journal_->unavailable_reason()));
    }
    return std::nullopt;
  }

  [[nodiscard]] Journal& journal() override { return *journal_; }

  std::unique_ptr<Dispatcher> make_dispatcher(Metrics& metrics, const Logger& log) override {
    return std::make_unique<SqliteDispatcher>(config_, *journal_, metrics, log);
  }

  [[nodiscard]] std::vector<std::pair<std::string, std::string>> location() const override {
    return {{"data_dir", config_.data_dir.string()}};
  }

  std::vector<EventRow> list_events(const std::string& log_id, int limit,
                                    std::string& error) override {
    return fbr::server::list_events(config_.data_dir, log_id, limit, error);
  }

  std::vector<std::string> replay(const std::string& log_id, const std::string& handler,
                                  std::string& error) override {
    std::vector<std::string> configured;
    for (const auto& h : config_.handlers)
      configured.push_back(h.name);
    return replay_deliveries(config_.data_dir, log_id, handler, configured, error);
  }

  [[nodiscard]] std::string replayed(std::string_view log_id,
                                     std::string_view handler) const override {
    return "re-queued " + std::string(log_id) + " for handler " + std::string(handler);
  }

  [[nodiscard]] std::string_view after_replay() const override {
    return "a running server picks them up within a second; otherwise they run at its next start";
  }

  // ---- the console (server/journal/console.hpp) ----
  EventPage query_events(const EventQuery& /*query*/, std::string& error) override {
    error = "not implemented yet";
    return {};
  }
  std::optional<EventDetail> event_detail(const std::string& /*key*/, std::string& error) override {
    error = "not implemented yet";
    return std::nullopt;
  }
  std::int64_t replay_state(const std::string& /*state*/, std::string& error) override {
    error = "not implemented yet";
    return 0;
  }
  QuarantinePage query_quarantine(const std::string& /*cursor*/, int /*limit*/,
                                  std::string& error) override {
    error = "not implemented yet";
    return {};
  }
  std::optional<QuarantineRow> quarantined(const std::string& /*id*/, std::string& error) override {
    error = "not implemented yet";
    return std::nullopt;
  }
  JournalCounts counts(std::string& error) override {
    error = "not implemented yet";
    return {};
  }
  std::vector<HealthCheck> health() override {
    return {{"journal_writable", journal_ && journal_->writable(), ""}};
  }

 private:
  const config::Config& config_;
  std::unique_ptr<SqliteJournal> journal_;
};

}  // namespace

std::unique_ptr<Backend> make_sqlite_backend(const config::Config& config) {
  return std::make_unique<SqliteBackend>(config);
}

}  // namespace fbr::server
