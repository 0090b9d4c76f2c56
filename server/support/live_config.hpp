#pragma once
// The configuration currently in force. SIGHUP swaps in a new one; each request and each dispatch
// round reads one consistent snapshot. What cannot change without a restart (listen, path,
// data_dir, journal, limits) is taken from the start-up snapshot by whoever owns it.
#include <atomic>
#include <memory>

#include "config/config.hpp"

namespace fbr::server {

class LiveConfig {
 public:
  explicit LiveConfig(config::Config config)
      : current_(std::make_shared<const config::Config>(std::move(config))) {}
  [[nodiscard]] std::shared_ptr<const config::Config> get() const { return current_.load(); }
  void set(std::shared_ptr<const config::Config> config) { current_.store(std::move(config)); }

 private:
  std::atomic<std::shared_ptr<const config::Config>> current_;
};

}  // namespace fbr::server
