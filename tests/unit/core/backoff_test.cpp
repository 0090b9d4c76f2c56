// Retry arithmetic: exponential growth, the cap, jitter bounds, and no overflow.
#include "core/backoff.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

using fbr::core::attempts_exhausted;
using fbr::core::backoff_delay;
using fbr::core::RetryPolicy;
using std::chrono::milliseconds;

TEST_SUITE("core/backoff") {
  TEST_CASE("the ceiling doubles per attempt - jitter 0 gives half of it") {
    const RetryPolicy p;  // 1000 ms initial, 300000 ms cap
    CHECK(backoff_delay(p, 1, 0.0) == milliseconds(500));
    CHECK(backoff_delay(p, 2, 0.0) == milliseconds(1000));
    CHECK(backoff_delay(p, 3, 0.0) == milliseconds(2000));
    CHECK(backoff_delay(p, 4, 0.0) == milliseconds(4000));
    CHECK(backoff_delay(p, 9, 0.0) == milliseconds(128000));
  }

  TEST_CASE("jitter spreads the delay over (ceiling/2 ceiling)") {
    const RetryPolicy p;
    CHECK(backoff_delay(p, 1, 0.5) == milliseconds(750));
    CHECK(backoff_delay(p, 3, 0.25) == milliseconds(2500));
    CHECK(backoff_delay(p, 1, 0.999999) == milliseconds(999));
    CHECK(backoff_delay(p, 1, std::nextafter(1.0, 0.0)) < milliseconds(1000));
  }

  TEST_CASE("the ceiling stops at max_backoff_ms") {
    const RetryPolicy p;
    CHECK(backoff_delay(p, 9, 0.999) < milliseconds(256000));  // 256000: not capped yet
    CHECK(backoff_delay(p, 10, 0.0) == milliseconds(150000));  // 512000 → capped at 300000
    CHECK(backoff_delay(p, 10, 0.999999) == milliseconds(299999));
    CHECK(backoff_delay(p, 11, 0.0) == milliseconds(150000));
    CHECK(backoff_delay(p, 50, 0.0) == milliseconds(150000));
    CHECK(backoff_delay(p, std::numeric_limits<int>::max(), 0.5) == milliseconds(225000));
  }

  TEST_CASE("non-decreasing in the attempt number at a fixed jitter") {
    const RetryPolicy p{10, 250, 60000};
    for (const double jitter : {0.0, 0.3, 0.99}) {
      milliseconds previous{0};
      for (int attempt = 1; attempt <= 40; ++attempt) {
        const milliseconds d = backoff_delay(p, attempt, jitter);
        CHECK(d >= previous);
        CHECK(d < milliseconds(60000));
        previous = d;
      }
    }
  }

  TEST_CASE("no overflow near the int64 limit") {
    constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
    const RetryPolicy huge{10, kMax / 2 + 1, kMax};
    CHECK(backoff_delay(huge, 1, 0.0).count() == (kMax / 2 + 1) / 2);
    CHECK(backoff_delay(huge, 2, 0.0).count() == kMax / 2);
    CHECK(backoff_delay(huge, 1000, 0.0).count() == kMax / 2);
    CHECK(backoff_delay(huge, 1000, 0.999).count() > 0);
    const RetryPolicy tiny{10, 1, kMax};
    CHECK(backoff_delay(tiny, 63, 0.0).count() == std::int64_t{1} << 61);  // ceiling 2^62
    CHECK(backoff_delay(tiny, 64, 0.0).count() == kMax / 2);               // 2^63 would overflow
    CHECK(backoff_delay(tiny, 100, 0.0).count() == kMax / 2);
  }

  TEST_CASE("odd inputs are clamped never undefined") {
    const RetryPolicy p;
    CHECK(backoff_delay(p, 0, 0.0) == milliseconds(500));   // as attempt 1
    CHECK(backoff_delay(p, -5, 0.0) == milliseconds(500));  // as attempt 1
    CHECK(backoff_delay(p, 1, -1.0) == milliseconds(500));  // jitter below 0 → 0
    CHECK(backoff_delay(p, 1, 7.0) == milliseconds(999));   // jitter 1 or more → just under 1
    CHECK(backoff_delay(p, 1, std::nan("")) == milliseconds(500));
    CHECK(backoff_delay(RetryPolicy{10, 5000, 2000}, 1, 0.0) ==
          milliseconds(1000));  // max < initial
    CHECK(backoff_delay(RetryPolicy{10, 0, 2000}, 5, 0.5) == milliseconds(0));
    CHECK(backoff_delay(RetryPolicy{10, -100, -1}, 3, 0.5) == milliseconds(0));
  }

  TEST_CASE("random_fraction stays at or above 0 and below 1, and varies") {
    double low = 1.0, high = 0.0;
    for (int i = 0; i < 1000; ++i) {
      const double x = fbr::core::random_fraction();
      REQUIRE(x >= 0.0);
      REQUIRE(x < 1.0);
      low = std::min(low, x);
      high = std::max(high, x);
    }
    CHECK(high - low > 0.5);
  }

  TEST_CASE("attempts_exhausted at max_attempts") {
    const RetryPolicy p{3, 1000, 300000};
    CHECK_FALSE(attempts_exhausted(p, 0));
    CHECK_FALSE(attempts_exhausted(p, 2));
    CHECK(attempts_exhausted(p, 3));
    CHECK(attempts_exhausted(p, 4));
  }
}
