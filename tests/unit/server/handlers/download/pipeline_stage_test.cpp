// The download Receiver's worker threads (pipeline.hpp): a Stage processes its chunks in order,
// holds its pusher to max_queued, and hands what its work refuses or throws back to the pusher.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "server/handlers/download/pipeline.hpp"

namespace fbr::server::download {
namespace {

Chunk chunk_of(std::string bytes) {
  Chunk c;
  c.bytes = std::move(bytes);
  return c;
}

}  // namespace

TEST_CASE("download pipeline stage: chunks are processed in the order pushed, drain waits") {
  ChunkPool pool(1 << 20, 16);
  std::string seen;
  Stage stage(
      64,
      [&](Chunk& c) {
        seen += c.bytes;
        return true;
      },
      pool);
  for (int i = 0; i < 200; ++i)
    REQUIRE(stage.push(chunk_of(std::to_string(i % 10))));
  stage.drain();
  std::string expected;
  for (int i = 0; i < 200; ++i)
    expected += std::to_string(i % 10);
  CHECK(seen == expected);
}

TEST_CASE("download pipeline stage: the pusher waits while max_queued bytes are queued") {
  ChunkPool pool(0, 0);
  std::atomic<bool> release{false};
  std::atomic<int> started{0};
  Stage stage(
      10,
      [&](Chunk&) {
        ++started;
        while (!release)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return true;
      },
      pool);
  REQUIRE(stage.push(chunk_of("aaaa")));  // taken by the worker, which holds it
  while (started == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(stage.push(chunk_of("bbbb")));    // queued: 4 of 10
  REQUIRE(stage.push(chunk_of("cccccc")));  // queued: 10 of 10
  std::atomic<bool> pushed{false};
  std::thread late([&] {
    (void)stage.push(chunk_of("d"));  // 11: waits for room
    pushed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(pushed.load());
  release = true;
  late.join();
  CHECK(pushed.load());
  stage.drain();
  CHECK(started == 4);
}

TEST_CASE("download pipeline stage: a refused chunk fails the stage; what it threw is rethrown") {
  ChunkPool pool(1 << 20, 16);
  int processed = 0;
  Stage refusing(
      1 << 20,
      [&](Chunk& c) {
        ++processed;
        return c.bytes != "bad";
      },
      pool);
  REQUIRE(refusing.push(chunk_of("good")));
  REQUIRE(refusing.push(chunk_of("bad")));
  refusing.drain();
  CHECK_FALSE(refusing.push(chunk_of("after")));
  refusing.drain();
  CHECK(processed == 2);

  Stage throwing(
      1 << 20, [](Chunk&) -> bool { throw std::runtime_error("disk on fire"); }, pool);
  REQUIRE(throwing.push(chunk_of("x")));
  CHECK_THROWS_WITH_AS(throwing.drain(), "disk on fire", std::runtime_error);
  CHECK_THROWS_WITH_AS((void)throwing.push(chunk_of("y")), "disk on fire", std::runtime_error);
}

TEST_CASE("download pipeline stage: stop drops what is queued and refuses more") {
  ChunkPool pool(1 << 20, 16);
  std::atomic<bool> release{false};
  std::atomic<int> processed{0};
  {
    Stage stage(
        1 << 20,
        [&](Chunk&) {
          while (!release)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          ++processed;
          return true;
        },
        pool);
    for (int i = 0; i < 5; ++i)
      REQUIRE(stage.push(chunk_of("z")));
    stage.stop();
    CHECK_FALSE(stage.push(chunk_of("late")));
    release = true;
  }  // joined: the chunk being processed finished, the queued ones were dropped
  CHECK(processed <= 1);
}

TEST_CASE("download pipeline pool: buffers come back for reuse, up to what it keeps") {
  ChunkPool pool(100, 40);
  std::string a = pool.take();
  CHECK(a.capacity() >= 40);
  a.assign(30, 'x');
  const char* const at = a.data();
  pool.give(std::move(a));
  const std::string b = pool.take();
  CHECK(b.empty());
  CHECK(b.data() == at);  // the same buffer
  std::string small;
  pool.give(std::move(small));  // below the reserve: not kept
  CHECK(pool.take().data() != nullptr);
}

}  // namespace fbr::server::download
