#include "server/support/ids.hpp"

#include <charconv>
#include <chrono>
#include <cstdint>
#include <random>
#include <string_view>

namespace fbr::server {
namespace {

constexpr std::string_view kHex = "0123456789abcdef";

/// Writes the low `digits` hex digits of `value` at `out`, most significant first.
char* put_hex(char* out, std::uint64_t value, int digits) {
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = kHex[value & 0xFU];
    value >>= 4U;
  }
  return out + digits;
}

/// Writes `value` (0 to 10^digits - 1) as exactly `digits` decimal digits at `out`.
char* put_decimal(char* out, unsigned value, int digits) {
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + value % 10U);
    value /= 10U;
  }
  return out + digits;
}

}  // namespace

// Formatted by hand: snprintf cost about as much as the rest of a request's receipt (a UUID,
// a timestamp and two log figures were ~10k instructions per request).
std::string new_uuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uint64_t hi = rng();
  std::uint64_t lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  std::string out(36, '-');
  char* p = out.data();
  p = put_hex(p, hi >> 32U, 8) + 1;
  p = put_hex(p, hi >> 16U, 4) + 1;
  p = put_hex(p, hi, 4) + 1;
  p = put_hex(p, lo >> 48U, 4) + 1;
  put_hex(p, lo, 12);
  return out;
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
  using namespace std::chrono;
  // The calendar arithmetic of <chrono> (no gmtime_r, which takes the time zone lock).
  const sys_time<milliseconds> t{milliseconds(unix_ms)};
  const auto day = floor<days>(t);
  const year_month_day date{day};
  const hh_mm_ss time{t - day};
  const int y = static_cast<int>(date.year());
  char buf[40];
  char* p = buf;
  if (y >= 0 && y <= 9999) {
    p = put_decimal(p, static_cast<unsigned>(y), 4);
  } else {
    p = std::to_chars(p, buf + 16, y).ptr;  // past year 9999 (or before 0): all its digits
  }
  *p++ = '-';
  p = put_decimal(p, static_cast<unsigned>(date.month()), 2);
  *p++ = '-';
  p = put_decimal(p, static_cast<unsigned>(date.day()), 2);
  *p++ = 'T';
  p = put_decimal(p, static_cast<unsigned>(time.hours().count()), 2);
  *p++ = ':';
  p = put_decimal(p, static_cast<unsigned>(time.minutes().count()), 2);
  *p++ = ':';
  p = put_decimal(p, static_cast<unsigned>(time.seconds().count()), 2);
  *p++ = '.';
  p = put_decimal(p, static_cast<unsigned>(time.subseconds().count()), 3);
  *p++ = 'Z';
  return {buf, static_cast<std::size_t>(p - buf)};
}

}  // namespace fbr::server
