// core/url.hpp: how URLs and addresses are shown.
#include "core/url.hpp"

#include <doctest/doctest.h>

namespace fbr::core {

TEST_SUITE("url") {
  TEST_CASE("host_port: IPv6 literals in brackets, names and IPv4 as they are") {
    CHECK(host_port("127.0.0.1", 8080) == "127.0.0.1:8080");
    CHECK(host_port("::1", 443) == "[::1]:443");
    CHECK(host_port("example.org", 0) == "example.org:0");
  }
}

}  // namespace fbr::core
