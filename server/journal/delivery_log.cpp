#include "server/journal/delivery_log.hpp"

namespace fbr::server {

void log_retry_scheduled(const Logger& log, const DeliveryName& delivery, int attempt,
                         std::int64_t next_in_ms) {
  log.info("delivery_retry_scheduled", log.fields()
                                           .add("log_id", delivery.log_id)
                                           .add("attempt_id", delivery.attempt_id)
                                           .add("handler", delivery.handler)
                                           .add("attempt", attempt)
                                           .add("next_in_ms", next_in_ms));
}

void log_dead(const Logger& log, const DeliveryName& delivery, int attempts,
              std::string_view error) {
  log.error("delivery_dead", log.fields()
                                 .add("log_id", delivery.log_id)
                                 .add("attempt_id", delivery.attempt_id)
                                 .add("handler", delivery.handler)
                                 .add("attempts", attempts)
                                 .add("error", error));
}

}  // namespace fbr::server
