#include "server/journal/worker_slots.hpp"

#include <algorithm>

namespace fbr::server {

int WorkerSlots::room(const std::string& handler, int cap) const {
  return std::max(0, std::min(free(), cap - busy(handler)));
}

int WorkerSlots::busy(const std::string& handler) const {
  const auto it = by_handler_.find(handler);
  return it == by_handler_.end() ? 0 : it->second;
}

void WorkerSlots::take(const std::string& handler) {
  ++busy_;
  ++by_handler_[handler];
}

void WorkerSlots::release(const std::string& handler) {
  --busy_;
  if (const auto it = by_handler_.find(handler); it != by_handler_.end() && --it->second <= 0) {
    by_handler_.erase(it);
  }
}

}  // namespace fbr::server
