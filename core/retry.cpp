#include "core/retry.hpp"

#include <algorithm>

namespace fbr::core {

std::string_view to_string(Outcome::Kind kind) {
  switch (kind) {
    case Outcome::Kind::kDone:
      return "done";
    case Outcome::Kind::kRetry:
      return "retry";
    case Outcome::Kind::kDead:
      return "dead";
  }
  return "unknown";
}

RetryDecision decide_retry(const Outcome& outcome, int attempts, const RetryPolicy& policy,
                           double jitter) {
  switch (outcome.kind) {
    case Outcome::Kind::kDone:
      return {};
    case Outcome::Kind::kDead:
      return {RetryDecision::Kind::kDead, std::chrono::milliseconds(0), outcome.message};
    case Outcome::Kind::kRetry:
      break;
  }
  if (attempts_exhausted(policy, attempts)) {
    return {RetryDecision::Kind::kDead, std::chrono::milliseconds(0),
            "gave up after " + std::to_string(attempts) + " attempts: " + outcome.message};
  }
  auto delay = backoff_delay(policy, attempts, jitter);
  if (outcome.retry_after) {
    // The target said when to come back: do so, within the policy's ceiling.
    delay = std::min(*outcome.retry_after, std::chrono::milliseconds(policy.max_backoff_ms));
  }
  return {RetryDecision::Kind::kRetry, delay, outcome.message};
}

}  // namespace fbr::core
