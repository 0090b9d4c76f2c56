#pragma once
// The dispatchers' workers and who holds them (both backends count with it).
#include <map>
#include <string>

namespace fbr::server {

/// At most `pool` deliveries at once, and at most a handler's `concurrency` of that handler, so one
/// handler that hangs cannot hold every worker. Not thread-safe (the dispatcher's mutex guards it).
class WorkerSlots {
 public:
  explicit WorkerSlots(int pool) : pool_(pool) {}
  /// How many more deliveries may start now, whatever their handler.
  [[nodiscard]] int free() const { return pool_ - busy_; }
  /// How many more deliveries of `handler`, allowed `cap` at once, may start now.
  [[nodiscard]] int room(const std::string& handler, int cap) const;
  [[nodiscard]] int busy() const { return busy_; }
  [[nodiscard]] int busy(const std::string& handler) const;
  /// A delivery of `handler` was queued (its slot is held until release).
  void take(const std::string& handler);
  void release(const std::string& handler);

 private:
  int pool_;
  int busy_ = 0;
  std::map<std::string, int> by_handler_;  // only handlers with a delivery queued or running
};

}  // namespace fbr::server
