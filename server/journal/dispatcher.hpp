#pragma once
// Runs the handlers after the 200, from the journal: for each handler whose `when` matched an
// event, one delivery, retried by core::decide_retry until done or dead. Each backend has its own
// (sqlite/dispatcher.hpp: a loop over delivery rows; nats/dispatcher.hpp: durable consumers);
// `serve` knows only this interface.
#include <optional>
#include <string>

#include "config/config.hpp"

namespace fbr::server {

class Dispatcher {
 public:
  Dispatcher() = default;
  virtual ~Dispatcher() = default;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  /// Builds every configured handler (errors name the handler) and starts running deliveries.
  virtual std::optional<std::string> start() = 0;

  /// Replaces the handlers (SIGHUP). Builds every new handler first: on any error nothing changes
  /// and the error (naming the handler) is returned. Running deliveries finish on the handler they
  /// started with.
  virtual std::optional<std::string> reload(const config::Config& config) = 0;

  /// Stops starting deliveries; running ones finish and record their outcome, the ones taken but
  /// not started go back to the journal for the next run (or another instance).
  virtual void stop() = 0;
};

}  // namespace fbr::server
