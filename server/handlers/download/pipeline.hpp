#pragma once
// The download Receiver's worker threads (receiver.hpp): a Stage is one thread that processes,
// in order, the chunks queued to it, with at most so many bytes queued (the pusher waits for
// room). What its work throws is kept and rethrown on the thread that pushes or drains next; when
// its work refuses a chunk (false), the stage has failed: the chunks after it are dropped and
// push() says false. Chunks carry their buffers from stage to stage; an emptied one goes to the
// ChunkPool, so that the same few buffers carry a file of any size.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fbr::server::download {

/// Bytes on their way through the Receiver's stages.
struct Chunk {
  std::string bytes;
  /// When set, the bytes are appended to this file (the part file) before they are checked,
  /// by the stage that checks them; `part_end` is the file's size once they are.
  int part_fd = -1;
  std::uint64_t part_end = 0;
  /// The bytes are a plain body's NDJSON, verified by the stage that stores them.
  bool verify = false;
  /// The bytes are decoded NDJSON for the decoded file (Limits::decoded_path), hashed there.
  bool to_decoded = false;
};

/// Emptied buffers kept for the next chunks (their memory used again, not mapped anew); shared by
/// the threads of one Receiver.
class ChunkPool {
 public:
  /// `keep`: how many bytes of capacity it holds at most; `reserve`: a new buffer's capacity.
  ChunkPool(std::uint64_t keep, std::size_t reserve) : keep_(keep), reserve_(reserve) {}
  /// An empty buffer with at least the reserve's capacity.
  std::string take();
  /// Keeps `bytes`' buffer when there is room for it.
  void give(std::string&& bytes);

 private:
  const std::uint64_t keep_;
  const std::size_t reserve_;
  std::mutex mutex_;
  std::vector<std::string> spare_;
  std::uint64_t kept_ = 0;
};

class Stage {
 public:
  using Work = std::function<bool(Chunk&)>;
  /// Starts the thread; with `nice` above 0, at that much lower a priority (a stage that has
  /// time to spare yields its core to the one the pipeline waits for).
  Stage(std::uint64_t max_queued, Work work, ChunkPool& pool, int nice = 0);
  /// stop(), then joins the thread.
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  /// Queues `chunk` (waiting while max_queued bytes are queued); false when the stage has failed
  /// or stops. Rethrows what the work threw.
  bool push(Chunk&& chunk);
  /// Waits until every chunk pushed has been processed; rethrows what the work threw.
  void drain();
  /// The queue is dropped and push() refuses from now on; the chunk being processed finishes.
  void stop();

 private:
  void run(int nice);
  const std::uint64_t max_queued_;
  const Work work_;
  ChunkPool& pool_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Chunk> queue_;
  std::uint64_t queued_bytes_ = 0;
  bool busy_ = false;  // a chunk taken off the queue is being processed
  bool stopping_ = false;
  bool failed_ = false;
  std::exception_ptr thrown_;
  std::thread thread_;
};

}  // namespace fbr::server::download
