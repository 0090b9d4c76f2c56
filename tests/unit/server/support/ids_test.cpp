#include "server/support/ids.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

using namespace fbr::server;

namespace {

bool lower_hex_uuid(const std::string& id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    const char c = id[i];
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

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

TEST_CASE("ids: a version 4 UUID stays random in form") {
  const std::string id = new_uuid();
  CHECK(lower_hex_uuid(id));
  CHECK(id[14] == '4');
  CHECK(new_uuid() != id);
}
