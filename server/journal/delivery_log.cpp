#include "server/journal/delivery_log.hpp"

namespace fbr::server {
namespace {

/// The fields that name a delivery in every line about it.
Fields delivery_fields(const Logger& log, const DeliveryName& delivery) {
  Fields fields = log.fields();
  fields.add("log_id", delivery.log_id)
      .add("attempt_id", delivery.attempt_id)
      .add("handler", delivery.handler);
  return fields;
}

}  // namespace

void log_retry_scheduled(const Logger& log, const DeliveryName& delivery, int attempt,
                         std::int64_t next_in_ms) {
  log.info("delivery_retry_scheduled",
           delivery_fields(log, delivery).add("attempt", attempt).add("next_in_ms", next_in_ms));
}

void log_dead(const Logger& log, const DeliveryName& delivery, int attempts,
              std::string_view error) {
  log.error("delivery_dead",
            delivery_fields(log, delivery).add("attempts", attempts).add("error", error));
}

}  // namespace fbr::server
