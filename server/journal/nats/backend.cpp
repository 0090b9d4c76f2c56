#include "server/journal/nats/backend.hpp"

#include "server/journal/nats/console.hpp"
#include "server/journal/nats/dispatcher.hpp"
#include "server/journal/nats/events.hpp"
#include "server/journal/nats/journal.hpp"
#include "server/journal/nats/stream.hpp"

namespace fbr::server {
namespace {

class NatsBackend final : public Backend {
 public:
  explicit NatsBackend(const config::Config& config)
      : config_(config), history_(std::make_shared<NatsHistory>()), console_(config, history_) {}

  std::optional<OpenError> open(const Logger& log) override {
    journal_ = std::make_unique<NatsJournal>(config_.journal.nats, config_.max_body_bytes, log);
    // Connects in the background: only settings that can never work fail here.
    if (auto error = journal_->open()) return OpenError{*error, true};
    return std::nullopt;
  }

  [[nodiscard]] Journal& journal() override { return *journal_; }

  std::unique_ptr<Dispatcher> make_dispatcher(Metrics& metrics, const Logger& log) override {
    return std::make_unique<NatsDispatcher>(config_, metrics, log, history_);
  }

  [[nodiscard]] std::vector<std::pair<std::string, std::string>> location() const override {
    return {{"stream", config_.journal.nats.stream}, {"subject", config_.journal.nats.subject}};
  }

  std::vector<EventRow> list_events(const std::string& log_id, int limit,
                                    std::string& error) override {
    return list_nats_events(config_, log_id, limit, error);
  }

  std::vector<std::string> replay(const std::string& log_id, const std::string& handler,
                                  std::string& error) override {
    // In a running service (the console's per-event replay) over the console's connection; the
    // CLI connects once, failing at once when no server answers.
    if (journal_ != nullptr) return console_.replay_event(log_id, handler, error);
    return replay_nats_event(config_, log_id, handler, error);
  }

  [[nodiscard]] std::string replayed(std::string_view log_id,
                                     std::string_view handler) const override {
    return "published " + std::string(log_id) + " to " +
           nats_stream::replay_subject(config_.journal.nats.subject, handler) + " for handler " +
           std::string(handler);
  }

  [[nodiscard]] std::string_view after_replay() const override {
    return "any running receiver's dispatcher picks them up from the stream";
  }

  // ---- the console (server/journal/console.hpp, nats/console.hpp) ----
  EventPage query_events(const EventQuery& query, std::string& error) override {
    return console_.query_events(query, error);
  }
  std::optional<EventDetail> event_detail(const std::string& key, std::string& error) override {
    return console_.event_detail(key, error);
  }
  std::int64_t replay_state(const std::string& state, std::string& error) override {
    return console_.replay_state(state, error);
  }
  QuarantinePage query_quarantine(const std::string& cursor, int limit,
                                  std::string& error) override {
    return console_.query_quarantine(cursor, limit, error);
  }
  std::optional<QuarantineRow> quarantined(const std::string& id, std::string& error) override {
    return console_.quarantined(id, error);
  }
  JournalCounts counts(std::string& error) override { return console_.counts(error); }
  std::vector<HealthCheck> health() override {
    const bool writable = journal_ && journal_->writable();
    std::vector<HealthCheck> checks{{"journal_writable", writable,
                                     writable || !journal_ ? "" : journal_->unavailable_reason()}};
    for (auto& check : console_.health())
      checks.push_back(std::move(check));
    return checks;
  }

 private:
  const config::Config& config_;
  std::shared_ptr<NatsHistory> history_;  // what the dispatcher ran, for the console
  NatsConsole console_;
  std::unique_ptr<NatsJournal> journal_;
};

}  // namespace

std::unique_ptr<Backend> make_nats_backend(const config::Config& config) {
  return std::make_unique<NatsBackend>(config);
}

}  // namespace fbr::server
