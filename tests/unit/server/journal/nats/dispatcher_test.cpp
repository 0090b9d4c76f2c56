// The NATS dispatcher's own pure part: the AckWait of its consumers. (Names and headers:
// stream_test.cpp; what follows each outcome: tests/unit/core/retry_test.cpp.)
#include "server/journal/nats/dispatcher.hpp"

#include <doctest/doctest.h>

using namespace fbr::server;
using std::chrono::milliseconds;

TEST_CASE("nats dispatch: AckWait is the first back-off within 5 to 30 seconds") {
  CHECK(nats_ack_wait({10, 1000, 300000}) == milliseconds(5000));
  CHECK(nats_ack_wait({10, 12000, 300000}) == milliseconds(12000));
  CHECK(nats_ack_wait({10, 600000, 900000}) == milliseconds(30000));
  CHECK(nats_ack_wait({1, 0, 0}) == milliseconds(5000));
}
