#include "core/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>

namespace fbr::core {

std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int attempt, double jitter) {
  const std::int64_t cap = std::max<std::int64_t>(policy.max_backoff_ms, 0);
  std::int64_t ceiling = std::min(std::max<std::int64_t>(policy.initial_backoff_ms, 0), cap);
  // Double until the cap, never past it: no overflow whatever `attempt` is, and at most 63 steps.
  for (int i = 1; i < attempt && ceiling > 0 && ceiling < cap; ++i) {
    ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
  }
  if (!(jitter >= 0.0)) jitter = 0.0;  // also NaN
  if (jitter >= 1.0) jitter = std::nextafter(1.0, 0.0);
  const std::int64_t half = ceiling / 2;
  const std::int64_t spread = ceiling - half;
  const auto extra = static_cast<std::int64_t>(jitter * static_cast<double>(spread));
  return std::chrono::milliseconds(half + std::min(extra, std::max<std::int64_t>(spread - 1, 0)));
}

double random_fraction() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace fbr::core
