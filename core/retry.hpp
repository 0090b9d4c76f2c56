#pragma once
// What became of a delivery attempt (Outcome) and what follows from it (RetryDecision): the one
// retry decision both dispatchers take, pure arithmetic over core/backoff.hpp. The SQLite
// dispatcher writes it as a delivery row, the NATS dispatcher as an ack, a nak with delay or a
// dead letter.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "core/backoff.hpp"

namespace fbr::core {

/// What became of an attempt.
struct Outcome {
  enum class Kind { kDone, kRetry, kDead };
  Kind kind = Kind::kDone;
  std::string message;  ///< why it failed (bounded; never a secret)
  /// The target asked to wait this long before the next try (HTTP Retry-After).
  std::optional<std::chrono::milliseconds> retry_after;

  static Outcome done() { return {}; }
  static Outcome retry(std::string why, std::optional<std::chrono::milliseconds> after = {}) {
    return {Kind::kRetry, std::move(why), after};
  }
  static Outcome dead(std::string why) { return {Kind::kDead, std::move(why), std::nullopt}; }
};

/// "done", "retry" or "dead" (logs, metrics).
std::string_view to_string(Outcome::Kind kind);

/// What a dispatcher does after an attempt.
struct RetryDecision {
  enum class Kind {
    kDone,   ///< delivered: nothing more to do
    kRetry,  ///< try again after `delay`
    kDead,   ///< never again: a permanent failure, or the attempts are spent
  };
  Kind kind = Kind::kDone;
  std::chrono::milliseconds delay{0};  ///< kRetry: wait this long before the next attempt
  std::string error;                   ///< kRetry / kDead: why (the outcome's message)
};

/// The decision after attempt number `attempts` (1-based, this one included) had `outcome`: a
/// retry waits backoff_delay(policy, attempts, jitter), or the target's Retry-After within
/// max_backoff_ms; a retry past max_attempts is dead ("gave up after N attempts: ...").
RetryDecision decide_retry(const Outcome& outcome, int attempts, const RetryPolicy& policy,
                           double jitter);

}  // namespace fbr::core
