// WorkerSlots (issue 12): the count both dispatchers keep so that a handler never holds more than
// its `concurrency` workers and the others keep theirs.
#include "server/journal/worker_slots.hpp"

#include <doctest/doctest.h>

using fbr::server::WorkerSlots;

TEST_CASE("worker slots: a handler at its cap has no room while the pool still has some") {
  WorkerSlots slots(8);
  for (int i = 0; i < 6; ++i) {
    REQUIRE(slots.room("download", 6) > 0);
    slots.take("download");
  }
  CHECK(slots.room("download", 6) == 0);
  CHECK(slots.free() == 2);
  CHECK(slots.room("file", 8) == 2);  // the pool's free slots, not its cap
  slots.take("file");
  slots.take("file");
  CHECK(slots.room("file", 8) == 0);  // the pool is full
  CHECK(slots.busy() == 8);
  CHECK(slots.busy("download") == 6);
}

TEST_CASE("worker slots: a released slot is room again for its handler") {
  WorkerSlots slots(4);
  slots.take("a");
  slots.take("a");
  CHECK(slots.room("a", 2) == 0);
  slots.release("a");
  CHECK(slots.room("a", 2) == 1);
  slots.release("a");
  CHECK(slots.busy("a") == 0);
  CHECK(slots.free() == 4);
  CHECK(slots.room("a", 2) == 2);
}

TEST_CASE("worker slots: a lowered cap (reload) leaves no room until enough finish") {
  WorkerSlots slots(8);
  for (int i = 0; i < 5; ++i)
    slots.take("h");
  CHECK(slots.room("h", 3) == 0);  // never negative
  slots.release("h");
  slots.release("h");
  CHECK(slots.room("h", 3) == 0);
  slots.release("h");
  CHECK(slots.room("h", 3) == 1);
}
