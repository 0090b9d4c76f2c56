#include "server/journal/nats/backend.hpp"

#include "server/journal/nats/dispatcher.hpp"
#include "server/journal/nats/events.hpp"
#include "server/journal/nats/journal.hpp"
#include "server/journal/nats/stream.hpp"

namespace fbr::server {
namespace {

class NatsBackend final : public Backend {
 public:
  explicit NatsBackend(const config::Config& config) : config_(config) {}

  std::optional<OpenError> open(const Logger& log) override {
    journal_ = std::make_unique<NatsJournal>(config_.journal.nats, config_.max_body_bytes, log);
    // Connects in the background: only settings that can never work fail here.
    if (auto error = journal_->open()) return OpenError{*error, true};
    return std::nullopt;
  }

  [[nodiscard]] Journal& journal() override { return *journal_; }

  std::unique_ptr<Dispatcher> make_dispatcher(Metrics& metrics, const Logger& log) override {
    return std::make_unique<NatsDispatcher>(config_, metrics, log);
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
  std::unique_ptr<NatsJournal> journal_;
};

}  // namespace

std::unique_ptr<Backend> make_nats_backend(const config::Config& config) {
  return std::make_unique<NatsBackend>(config);
}

}  // namespace fbr::server
