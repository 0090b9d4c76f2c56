#include "server/journal/nats/backend.hpp"

#include "server/journal/nats/dispatcher.hpp"
#include "server/journal/nats/events.hpp"
#include "server/journal/nats/stream.hpp"

namespace fbr::server {

std::optional<OpenError> NatsBackend::open(const Logger& log) {
  journal_ = std::make_unique<NatsJournal>(config_.journal.nats, config_.max_body_bytes, log);
  // Connects in the background: only settings that can never work fail here.
  if (auto error = journal_->open()) return OpenError{*error, true};
  return std::nullopt;
}

std::unique_ptr<Dispatcher> NatsBackend::make_dispatcher(Metrics& metrics, const Logger& log) {
  return std::make_unique<NatsDispatcher>(config_, metrics, log);
}

std::vector<std::pair<std::string, std::string>> NatsBackend::location() const {
  return {{"stream", config_.journal.nats.stream}, {"subject", config_.journal.nats.subject}};
}

std::vector<EventRow> NatsBackend::list_events(const std::string& log_id, int limit,
                                               std::string& error) {
  return list_nats_events(config_, log_id, limit, error);
}

std::vector<std::string> NatsBackend::replay(const std::string& log_id, const std::string& handler,
                                             std::string& error) {
  return replay_nats_event(config_, log_id, handler, error);
}

std::string NatsBackend::replayed(std::string_view log_id, std::string_view handler) const {
  return "published " + std::string(log_id) + " to " +
         nats_stream::replay_subject(config_.journal.nats.subject, handler) + " for handler " +
         std::string(handler);
}

std::string_view NatsBackend::after_replay() const {
  return "any running receiver's dispatcher picks them up from the stream";
}

}  // namespace fbr::server
