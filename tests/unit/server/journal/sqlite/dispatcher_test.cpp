#include "server/journal/sqlite/dispatcher.hpp"

#include <doctest/doctest.h>

using namespace fbr::server;
using std::chrono::milliseconds;

TEST_CASE("dispatch: a done attempt ends the delivery") {
  fbr::core::RetryPolicy policy{3, 1000, 60000};
  auto u = next_state("k", "h", 1, Outcome::done(), policy, 5000, 0.5);
  CHECK(u.state == DeliveryState::kDone);
  CHECK(u.attempts == 1);
  CHECK(u.last_error.empty());
}

TEST_CASE("dispatch: a failed attempt is retried later with growing delays") {
  fbr::core::RetryPolicy policy{5, 1000, 60000};
  auto first = next_state("k", "h", 1, Outcome::retry("boom"), policy, 0, 0.0);
  auto second = next_state("k", "h", 2, Outcome::retry("boom"), policy, 0, 0.0);
  auto third = next_state("k", "h", 3, Outcome::retry("boom"), policy, 0, 0.0);
  CHECK(first.state == DeliveryState::kFailed);
  CHECK(first.last_error == "boom");
  CHECK(first.next_attempt_at_ms > 0);
  CHECK(second.next_attempt_at_ms > first.next_attempt_at_ms);
  CHECK(third.next_attempt_at_ms > second.next_attempt_at_ms);
}

TEST_CASE("dispatch: after max_attempts a failing delivery is dead") {
  fbr::core::RetryPolicy policy{3, 1000, 60000};
  auto u = next_state("k", "h", 3, Outcome::retry("exit status 1"), policy, 0, 0.5);
  CHECK(u.state == DeliveryState::kDead);
  CHECK(u.last_error == "gave up after 3 attempts: exit status 1");
}

TEST_CASE("dispatch: a permanent failure is dead at once") {
  fbr::core::RetryPolicy policy{10, 1000, 60000};
  auto u = next_state("k", "h", 1, Outcome::dead("HTTP 404"), policy, 0, 0.5);
  CHECK(u.state == DeliveryState::kDead);
  CHECK(u.last_error == "HTTP 404");
}

TEST_CASE("dispatch: Retry-After is honoured within the policy's ceiling") {
  fbr::core::RetryPolicy policy{10, 1000, 60000};
  auto asked = next_state("k", "h", 1, Outcome::retry("503", milliseconds(7000)), policy, 100, 0.5);
  CHECK(asked.next_attempt_at_ms == 7100);
  auto capped =
      next_state("k", "h", 1, Outcome::retry("503", milliseconds(3'600'000)), policy, 100, 0.5);
  CHECK(capped.next_attempt_at_ms == 60100);
}
