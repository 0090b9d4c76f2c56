#pragma once
// The `nats` handler: publishes each event's raw body to a JetStream subject with Nats-Msg-Id =
// the event key (the stream drops a re-delivery inside its duplicate window) and the Fbr-Log-Id /
// Fbr-Status headers. Done when JetStream acknowledges; everything else is retried, JetStream's
// configuration errors too (no stream for the subject, another stream than `stream`): an operator
// can fix those while the delivery waits.
#include <memory>
#include <string>

#include "server/handlers/handler.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {

class NatsHandler final : public Handler {
 public:
  /// Starts connecting (in the background: an unreachable server is not an error here, its
  /// deliveries are retried). Throws std::runtime_error naming the handler for options that can
  /// never work (a bad URL, unreadable credentials).
  NatsHandler(std::string name, const config::NatsHandler& settings, const Logger& log);
  ~NatsHandler() override;

 protected:
  Outcome run(const Delivery& delivery) override;

 private:
  std::string subject_;
  std::string stream_;
  std::unique_ptr<nats::Connection> connection_;
};

}  // namespace fbr::server
