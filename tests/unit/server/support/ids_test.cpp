// Identifiers and timestamps: a UUID is version 4, lower case, in its five groups; a timestamp is
// the UTC calendar date and time to the millisecond, the same as gmtime's.
#include "server/support/ids.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include "core/text.hpp"

namespace fbr::server {
namespace {

std::string gmtime_iso(long long unix_ms) {
  const auto secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

TEST_CASE("utc_iso writes the UTC date and time with milliseconds") {
  CHECK(utc_iso(0) == "1970-01-01T00:00:00.000Z");
  CHECK(utc_iso(1780008292399) == "2026-05-28T22:44:52.399Z");
  CHECK(utc_iso(951782400000 + 86399999) == "2000-02-29T23:59:59.999Z");  // a leap day
  CHECK(utc_iso(253402300799999) == "9999-12-31T23:59:59.999Z");
  CHECK(utc_now_iso().size() == 24);
}

TEST_CASE("utc_iso agrees with gmtime across centuries, leap days and the ends of days") {
  long long checked = 0;
  for (long long ms = 0; ms < 253402300800000; ms += 7776000001 + ms / 9) {  // ~90 days, growing
    for (const long long at : {ms, ms - ms % 86400000 + 86399999, ms - ms % 86400000}) {
      CHECK(utc_iso(at) == gmtime_iso(at));
      ++checked;
    }
  }
  CHECK(checked > 200);
}

TEST_CASE("utc_iso still writes a time before 1970 or past year 9999") {
  CHECK(utc_iso(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(utc_iso(253402300800000) == "10000-01-01T00:00:00.000Z");
}

TEST_CASE("new_uuid is a random version-4 UUID in lower case") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_uuid();
    REQUIRE(core::is_uuid(id));
    CHECK(id[14] == '4');
    CHECK(std::string("89ab").find(id[19]) != std::string::npos);
    for (const char c : id)
      CHECK((c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')));
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
}

bool lower_hex_uuid(const std::string& id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    const char c = id[i];
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

TEST_CASE("ids: a version 7 UUID carries the time and sorts after the ones made before it") {
  using namespace std::chrono;
  const auto before = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  std::vector<std::string> ids;
  for (int i = 0; i < 20000; ++i)  // more than 4096 in one millisecond, most likely
    ids.push_back(new_uuid_v7());
  const auto after = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(unique.size() == ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    REQUIRE(lower_hex_uuid(ids[i]));
    CHECK(ids[i][14] == '7');                                          // version
    CHECK(std::string("89ab").find(ids[i][19]) != std::string::npos);  // RFC 9562 variant
    if (i > 0) REQUIRE(ids[i - 1] < ids[i]);
  }
  const std::string first = ids.front().substr(0, 8) + ids.front().substr(9, 4);
  const auto ms = static_cast<long long>(std::stoull(first, nullptr, 16));
  CHECK(ms >= before);
  CHECK(ms <= after + 5);  // a burst may borrow a few milliseconds ahead
}

}  // namespace
}  // namespace fbr::server
