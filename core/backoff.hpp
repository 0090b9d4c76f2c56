#pragma once
// Retry arithmetic for handler deliveries: exponential back-off with equal jitter.
#include <chrono>
#include <cstdint>

namespace fbr::core {

struct RetryPolicy {
  int max_attempts = 10;
  std::int64_t initial_backoff_ms = 1000;
  std::int64_t max_backoff_ms = 300000;
};

/// Delay before attempt `attempt + 1` after `attempt` (1-based) failed: the exponential ceiling
/// min(max, initial * 2^(attempt-1)), scaled by `jitter` in [0, 1) into [ceiling/2, ceiling).
std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int attempt, double jitter);

/// A uniformly random number in [0, 1): the `jitter` of backoff_delay (one generator per thread).
double random_fraction();

/// True when a delivery that has made `attempts` attempts may not be tried again.
inline bool attempts_exhausted(const RetryPolicy& policy, int attempts) {
  return attempts >= policy.max_attempts;
}

}  // namespace fbr::core
