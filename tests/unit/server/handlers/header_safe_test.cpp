// What the http and nats handlers put in a header line from the event.
#include "server/handlers/header_safe.hpp"

#include <doctest/doctest.h>

namespace fbr::server {

TEST_CASE("handler header_safe: control characters are dropped, the rest kept") {
  CHECK(header_safe("log-1") == "log-1");
  CHECK(header_safe("a\r\nX-Evil: 1") == "aX-Evil: 1");
  CHECK(header_safe(std::string("a\0b\x7f"
                                "c\t",
                                6)) == "abc");
  CHECK(header_safe("sha256:\xc3\xa9") == "sha256:\xc3\xa9");  // UTF-8 bytes stay
}

}  // namespace fbr::server
