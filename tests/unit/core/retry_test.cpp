// The one retry decision both dispatchers take (core/retry.hpp): done ends, dead is dead at once,
// a retry waits the growing back-off (or Retry-After within the ceiling) until max_attempts.
#include "core/retry.hpp"

#include <doctest/doctest.h>

using fbr::core::decide_retry;
using fbr::core::Outcome;
using fbr::core::RetryDecision;
using fbr::core::RetryPolicy;
using std::chrono::milliseconds;

TEST_SUITE("core/retry") {
  TEST_CASE("nats dispatch: done acks and a permanent failure is dead at once") {
    const RetryPolicy policy{5, 1000, 60000};
    CHECK(decide_retry(Outcome::done(), 1, policy, 0.5).kind == RetryDecision::Kind::kDone);
    const auto dead = decide_retry(Outcome::dead("HTTP 404"), 1, policy, 0.5);
    CHECK(dead.kind == RetryDecision::Kind::kDead);
    CHECK(dead.error == "HTTP 404");
  }

  TEST_CASE("nats dispatch: a retry naks with the growing back-off until max_attempts") {
    const RetryPolicy policy{4, 1000, 60000};
    const auto first = decide_retry(Outcome::retry("boom"), 1, policy, 0.0);
    const auto second = decide_retry(Outcome::retry("boom"), 2, policy, 0.0);
    const auto third = decide_retry(Outcome::retry("boom"), 3, policy, 0.0);
    CHECK(first.kind == RetryDecision::Kind::kRetry);
    CHECK(first.delay == milliseconds(500));  // equal jitter at 0: half the 1 s ceiling
    CHECK(second.delay == milliseconds(1000));
    CHECK(third.delay == milliseconds(2000));
    CHECK(first.error == "boom");
    const auto last = decide_retry(Outcome::retry("boom"), 4, policy, 0.0);
    CHECK(last.kind == RetryDecision::Kind::kDead);
    CHECK(last.error == "gave up after 4 attempts: boom");
  }

  TEST_CASE("nats dispatch: Retry-After sets the nak delay within max_backoff_ms") {
    const RetryPolicy policy{10, 1000, 60000};
    CHECK(decide_retry(Outcome::retry("503", milliseconds(7000)), 1, policy, 0.5).delay ==
          milliseconds(7000));
    CHECK(decide_retry(Outcome::retry("503", milliseconds(3'600'000)), 1, policy, 0.5).delay ==
          milliseconds(60000));
  }

  TEST_CASE("retry: Retry-After counts only while attempts remain") {
    const RetryPolicy policy{2, 1000, 60000};
    const auto last = decide_retry(Outcome::retry("503", milliseconds(7000)), 2, policy, 0.5);
    CHECK(last.kind == RetryDecision::Kind::kDead);
    CHECK(last.error == "gave up after 2 attempts: 503");
  }

  TEST_CASE("retry: a done or dead outcome waits for nothing") {
    const RetryPolicy policy{3, 1000, 60000};
    CHECK(decide_retry(Outcome::done(), 3, policy, 0.5).delay == milliseconds(0));
    CHECK(decide_retry(Outcome::dead("x"), 1, policy, 0.5).delay == milliseconds(0));
    CHECK(decide_retry(Outcome::done(), 1, policy, 0.5).error.empty());
  }

  TEST_CASE("retry: outcome kinds have the names logs and metrics use") {
    CHECK(to_string(Outcome::Kind::kDone) == "done");
    CHECK(to_string(Outcome::Kind::kRetry) == "retry");
    CHECK(to_string(Outcome::Kind::kDead) == "dead");
  }
}
