#include "server/support/ids.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <random>

namespace fbr::server {

std::string new_uuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uint64_t hi = rng();
  std::uint64_t lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

std::string new_uuid_v7() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  thread_local std::uint64_t last_ms = 0;
  thread_local std::uint64_t sequence = 0;  // 12 bits: rand_a as a counter (RFC 9562 6.2)
  using namespace std::chrono;
  std::uint64_t ms = static_cast<std::uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
  if (ms <= last_ms) {
    // The same millisecond (or the clock went back): count on from the last ID; past 4095 IDs
    // in one millisecond, borrow the next one.
    ms = last_ms;
    if (++sequence > 0xfff) {
      ++ms;
      sequence = 0;
    }
  } else {
    sequence = rng() & 0x3ff;  // a random start leaves room to count up
  }
  last_ms = ms;
  const std::uint64_t hi = (ms << 16) | 0x7000 | sequence;
  const std::uint64_t lo = (rng() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  std::size_t at = 0;
  auto put = [&](std::uint64_t value, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) {
      if (at == 8 || at == 13 || at == 18 || at == 23) ++at;
      out[at++] = kHex[(value >> (4 * i)) & 0xf];
    }
  };
  put(hi, 16);
  put(lo, 16);
  return out;
}

std::string utc_now_iso() {
  using namespace std::chrono;
  return utc_iso(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

std::string utc_iso(long long unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  const long long ms = unix_ms % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace fbr::server
