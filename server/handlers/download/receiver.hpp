#pragma once
// The limits a file's bytes are held to as they arrive (transfer.hpp), and the Receiver that
// decodes and verifies them: max_file_bytes (received and NDJSON bytes), max_decompression_ratio,
// the event's max_event_bytes (EventBudget) and the download volume's free-space reserve
// (DiskReserve).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/stream.hpp"
#include "server/handlers/download/transfer.hpp"

namespace fbr::server::download {

/// "larger than max_file_bytes (<limit> bytes): the file was removed".
std::string too_large(std::uint64_t limit);

/// The download volume's free-space reserve (min_free_bytes): writes stop before they would take
/// the volume below it, so that the journal, which may live on the same disk, keeps room. Shared
/// by the thread that writes the part file and the Receiver's worker (the decoded file): locked.
class DiskReserve {
 public:
  DiskReserve(std::filesystem::path dir, std::optional<std::uint64_t> min_free)
      : dir_(std::move(dir)), min_free_(min_free) {}

  /// Whether `bytes` more may be written; looks at the free space (statvfs) only every so often
  /// while it is far from the reserve.
  bool take(std::uint64_t bytes);
  /// Why take() refused, with the free space and the reserve it saw.
  [[nodiscard]] std::string message() const;

 private:
  std::filesystem::path dir_;
  std::optional<std::uint64_t> min_free_;
  mutable std::mutex mutex_;
  std::uint64_t unchecked_ = 0;
  std::uint64_t free_ = 0;
  std::uint64_t reserve_ = 0;
};

/// The limits a file's bytes are held to as they arrive, and where its decoded form goes.
struct Limits {
  std::uint64_t max_file_bytes;
  std::uint32_t max_ratio;
  bool store_gzip;
  EventBudget* budget;
  /// When set (and store_gzip is not), a body with a gzip layer is decoded into this file as it
  /// arrives (the stored NDJSON, hashed on the way), so that storing it is a rename, not a
  /// second pass over the part file (stored_temp_path()).
  std::filesystem::path decoded_path = {};
  DiskReserve* reserve = nullptr;  ///< what the decoded file takes of the volume, when set
};

/// The temp name of a file's stored form while it is written: ".<name>.tmp".
std::filesystem::path stored_temp_path(const std::filesystem::path& final_path);

/// The received bytes of one file, decoded and verified as they come, and their SHA-256.
///
/// Past the first kInlineBytes, the SHA-256, the decoding and the verification run on a worker
/// thread beside the one that receives and writes the part file: feed() counts the raw bytes and
/// charges them, then queues a copy (at most kQueueBytes queued; feed waits for room). What reads
/// the worker's results (finish, error, raw_sha256, gzip_layers, verifier, wrote_decoded,
/// stored_decoded, settle) first waits until it has processed everything queued; an exception
/// thrown on the worker is rethrown there or by the next feed, on the caller's thread.
class Receiver {
 public:
  static constexpr std::uint64_t kInlineBytes = 1 << 20;
  /// Small enough that the queued chunks stay in the cache the two cores share: 8 MiB cost
  /// ~70 ms more CPU per 501 MB (bench/download_bench.sh) and 12 MiB more resident.
  static constexpr std::uint64_t kQueueBytes = 2 << 20;
  /// Emptied chunks kept for the next ones (their memory used again, not mapped anew).
  static constexpr std::uint64_t kSpareBytes = 1 << 20;

  Receiver(const FileTask& task, bool content_encoding_gzip, const Limits& limits);
  /// Stops the worker (what is still queued is dropped: the receiver's result is not used).
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  /// The next received bytes; false when they pass a limit or fail verification (see error()),
  /// here or, for bytes queued before, on the worker.
  bool feed(std::string_view raw);
  /// The end of the body: whether the whole of it decoded and verified.
  bool finish();
  [[nodiscard]] std::string error() const;
  /// The file is stored: it counts against the event's budget as its stored bytes from now on.
  void settle(std::uint64_t stored);
  /// The part file `fd` holds the bytes fed so far: starts their write-back (WriteBack).
  void written(int fd) { write_back_.wrote(fd, raw_bytes_); }
  [[nodiscard]] std::uint64_t raw_bytes() const { return raw_bytes_; }
  [[nodiscard]] std::string raw_sha256() const;
  [[nodiscard]] int gzip_layers() const;
  [[nodiscard]] const NdjsonVerifier& verifier() const;
  /// The resources verified so far, without waiting for the worker (progress reports).
  [[nodiscard]] std::uint64_t resources() const {
    return resources_.load(std::memory_order_relaxed);
  }
  /// Whether the body's decoded form went to Limits::decoded_path (then stored() is the file).
  [[nodiscard]] bool wrote_decoded() const;
  /// After finish(), when wrote_decoded(): the decoded file fsync'd, its size and SHA-256.
  Stored stored_decoded();

 private:
  /// The raw bytes through the SHA-256 and the decoder (inline, or on the worker).
  bool process(std::string_view raw);
  /// The worker thread: processes the queue until the receiver goes.
  void work();
  /// Waits until the worker has processed what was queued; rethrows what it threw.
  void drain() const;
  /// The decoded bytes to Limits::decoded_path (opened, truncated, on the first of them).
  void write_decoded(std::string_view d);
  bool decoded(std::string_view d);
  /// Counts `holds` bytes (what the file holds on disk, or will once stored) against the event's
  /// budget; called by both threads.
  bool charge(std::uint64_t holds);
  [[nodiscard]] std::string budget_error() const;

  Limits limits_;
  // The caller's: the raw bytes, their write-back and why feed() refused them.
  std::uint64_t raw_bytes_ = 0;
  WriteBack write_back_;
  std::string feed_error_;
  // Both threads': the budget charge.
  std::mutex charge_mutex_;
  std::uint64_t charged_ = 0;
  std::atomic<std::uint64_t> resources_{0};
  // The worker's (or the caller's while there is no worker, or once drained).
  std::uint64_t processed_raw_ = 0;
  std::uint64_t ndjson_bytes_ = 0;
  std::string limit_error_;
  NdjsonVerifier verifier_;
  BodyDecoder decoder_;
  Sha256 raw_sha_;
  posix::Fd decoded_fd_;
  bool wrote_decoded_ = false;
  Sha256 decoded_sha_;
  WriteBack decoded_write_back_;
  // The queue between the two, under mutex_.
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::deque<std::string> queue_;
  std::vector<std::string> spare_;  // emptied chunks, their memory used again
  std::uint64_t queued_bytes_ = 0;
  std::uint64_t spare_bytes_ = 0;
  bool busy_ = false;      // the worker is processing a chunk it took off the queue
  bool stopping_ = false;  // the receiver goes
  bool worker_failed_ = false;
  std::exception_ptr worker_exception_;
  std::thread worker_;
};

}  // namespace fbr::server::download
