#pragma once
// The lines every dispatcher logs after an attempt that did not end its delivery (the attempt's
// own `delivery` line is Handler::deliver's): the same names and fields whatever the backend.
#include <cstdint>
#include <string_view>

#include "server/support/log.hpp"

namespace fbr::server {

/// Which delivery a line is about.
struct DeliveryName {
  std::string_view log_id;  ///< core::log_id_or_key of the event
  std::string_view attempt_id;
  std::string_view handler;
};

/// `delivery_retry_scheduled`: attempt `attempt` failed, the next one is in `next_in_ms`.
void log_retry_scheduled(const Logger& log, const DeliveryName& delivery, int attempt,
                         std::int64_t next_in_ms);

/// `delivery_dead`: no attempt after `attempts`, because of `error`.
void log_dead(const Logger& log, const DeliveryName& delivery, int attempts,
              std::string_view error);

}  // namespace fbr::server
