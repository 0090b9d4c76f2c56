#include "server/journal/journal.hpp"

#include <chrono>

namespace fbr::server {

std::string_view to_string(DeliveryState state) {
  switch (state) {
    case DeliveryState::kPending:
      return "pending";
    case DeliveryState::kRunning:
      return "running";
    case DeliveryState::kDone:
      return "done";
    case DeliveryState::kFailed:
      return "failed";
    case DeliveryState::kDead:
      return "dead";
  }
  return "pending";
}

std::int64_t unix_ms_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace fbr::server
