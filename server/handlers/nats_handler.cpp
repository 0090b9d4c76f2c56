#include "server/handlers/nats_handler.hpp"

#include <stdexcept>
#include <utility>

#include "server/handlers/header_safe.hpp"

namespace fbr::server {
namespace {

// JetStream answers within milliseconds when it can; past this the attempt is retried.
constexpr int kPublishTimeoutMs = 10000;

}  // namespace

NatsHandler::NatsHandler(std::string name, const config::NatsHandler& settings, const Logger& log)
    : Handler(std::move(name), log), subject_(settings.subject), stream_(settings.stream) {
  nats::Options options;
  options.servers = settings.servers;
  options.credentials_file = settings.credentials_file;
  options.name = "fhir-bulk-receiver handler " + this->name();
  std::string error;
  connection_ = nats::Connection::open(options, error);
  if (!connection_) throw std::runtime_error("handler " + this->name() + ": " + error);
}

NatsHandler::~NatsHandler() {
  connection_->close(1000);
}

Outcome NatsHandler::run(const Delivery& delivery) {
  nats::Message message;
  message.subject = subject_;
  message.msg_id = header_safe(delivery.event_key);
  message.headers = {{"Fbr-Log-Id", header_safe(delivery.log_id)},
                     {"Fbr-Status", std::to_string(delivery.status)}};
  message.body = delivery.body;
  const auto result = nats::publish_sync(*connection_, message, kPublishTimeoutMs, stream_);
  if (result.ok) return Outcome::done();
  std::string why = result.error;
  // libnats: "No responders available for request": nothing in JetStream stores the subject.
  if (why.find("o responders") != std::string::npos) {
    why += " (no JetStream stream stores subject " + subject_ + ")";
  }
  return Outcome::retry("publish to " + subject_ + ": " + why);
}

}  // namespace fbr::server
