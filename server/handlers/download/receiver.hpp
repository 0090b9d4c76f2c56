#pragma once
// The limits a file's bytes are held to as they arrive (transfer.hpp), and the Receiver that
// decodes and verifies them: max_file_bytes (received and NDJSON bytes), max_decompression_ratio,
// the event's max_event_bytes (EventBudget) and the download volume's free-space reserve
// (DiskReserve).
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/pipeline.hpp"
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
  DiskReserve* reserve = nullptr;  ///< what the part and decoded files take of the volume
};

/// The temp name of a file's stored form while it is written: ".<name>.tmp".
std::filesystem::path stored_temp_path(const std::filesystem::path& final_path);

/// The received bytes of one file, written to its part file, decoded and verified as they come,
/// and their SHA-256.
///
/// The first kInlineBytes are processed on the caller's thread. Past them worker threads
/// (pipeline.hpp's Stage) take part of the work, so that a large file goes at the speed of the
/// busiest thread rather than of the sum: the NDJSON is verified by the thread that has it in its
/// cache (the caller for a plain body; for a gzip one, a decoding stage that also hashes the raw
/// bytes and decodes them), and a store stage writes and hashes what is stored (a plain body's
/// part file; a gzip body's decoded file, its raw part file, small, written by the caller).
/// Bytes are handed on in chunks of kBatchBytes, at most kQueueBytes queued per stage (the
/// pusher waits for room). What reads the workers' results (finish, error, raw_sha256,
/// gzip_layers, verifier, wrote_decoded, stored_decoded, settle) first waits until they have
/// processed all that was fed, the part file written; an exception thrown on a worker is
/// rethrown there or by the next feed, on the caller's thread.
class Receiver {
 public:
  static constexpr std::uint64_t kInlineBytes = 1 << 20;
  /// What the caller gathers before it queues the bytes (and what the first stage gathers of the
  /// decoded bytes): one hand-off per chunk, not per read from the socket.
  static constexpr std::size_t kBatchBytes = 512 << 10;
  /// Small enough that the queued chunks stay in the cache the two cores share.
  static constexpr std::uint64_t kQueueBytes = 2 << 20;
  /// Emptied chunks kept for the next ones.
  static constexpr std::uint64_t kSpareBytes = 3 << 20;

  Receiver(const FileTask& task, bool content_encoding_gzip, const Limits& limits);
  /// Stops the workers (what is still queued is dropped: the receiver's result is not used).
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  /// The next received bytes; false when they pass a limit or fail verification (see error()),
  /// here or, for bytes queued before, on a worker. With `part_fd` (0 or more), the bytes are also
  /// appended to that file (the part file, opened O_APPEND; `part_name` in messages) and their
  /// write-back started (WriteBack), here or on the second worker, in the order fed; a write
  /// that fails throws (here or from a later call). Without it they are only processed (bytes
  /// read back from a part file).
  bool feed(std::string_view raw, int part_fd = -1, std::string_view part_name = {});
  /// The transfer has gone quiet (the server stalls or dribbles): what the caller gathered goes on
  /// to the next stage now rather than when a chunk is full, so that the part file holds every
  /// byte received (what a kill leaves is what a resume asks for). Does not wait for the write.
  void flush();
  /// The end of the body: whether the whole of it decoded and verified.
  bool finish();
  [[nodiscard]] std::string error();
  /// The file is stored: it counts against the event's budget as its stored bytes from now on.
  void settle(std::uint64_t stored);
  [[nodiscard]] std::uint64_t raw_bytes() const { return raw_bytes_; }
  [[nodiscard]] std::string raw_sha256();
  [[nodiscard]] int gzip_layers();
  [[nodiscard]] const NdjsonVerifier& verifier();
  /// The resources verified so far, without waiting for the workers (progress reports).
  [[nodiscard]] std::uint64_t resources() const {
    return resources_.load(std::memory_order_relaxed);
  }
  /// Whether the body's decoded form went to Limits::decoded_path (then stored() is the file).
  [[nodiscard]] bool wrote_decoded();
  /// After finish(), when wrote_decoded(): the decoded file fsync'd, its size and SHA-256.
  Stored stored_decoded();

 private:
  /// The raw bytes through the SHA-256 and the decoder (inline, or on the decoding stage).
  bool process(std::string_view raw);
  /// The decoding stage's work: process() a queued chunk, what it decoded on to the store stage.
  bool process_chunk(Chunk& chunk);
  /// The decoded bytes: admitted and verified, then written to the decoded file when it is
  /// wanted (inline, or gathered for the store stage).
  bool decoded(std::string_view d);
  /// Counts `bytes` more NDJSON against max_file_bytes, the decompression ratio and the budget.
  bool admit(std::size_t bytes);
  bool verify(std::string_view d);
  /// The store stage's work: hashes and writes a chunk as its flags say.
  bool store_chunk(Chunk& chunk);
  /// The volume's reserve (Limits::reserve) for `bytes` more; throws its message when refused.
  void take_reserve(std::size_t bytes);
  /// Appends `bytes` to the part file (within the reserve) and starts their write-back up to
  /// `end`.
  void write_part(int fd, std::string_view bytes, std::uint64_t end);
  /// The caller's gathered bytes (open_) to the next stage; the decoding stage's gathered
  /// decoded bytes (decoded_open_) to the store stage.
  bool push_open();
  bool push_decoded();
  /// Waits until the workers have processed what was fed; rethrows what they threw.
  void drain();
  /// The decoded bytes to Limits::decoded_path (opened, truncated, on the first of them), hashed.
  void write_decoded(std::string_view d);
  /// Counts `holds` bytes (what the file holds on disk, or will once stored) against the event's
  /// budget; called by the caller and the decoding stage.
  bool charge(std::uint64_t holds);
  [[nodiscard]] std::string budget_error() const;

  Limits limits_;
  // The caller's: the raw bytes, why feed() refused them, the bytes gathered for the next stage.
  std::uint64_t raw_bytes_ = 0;
  std::string feed_error_;
  Chunk open_;
  bool plain_ = false;  // known to be plain when the workers started: no decoding stage
  // Both threads': the budget charge.
  std::mutex charge_mutex_;
  std::uint64_t charged_ = 0;
  std::atomic<std::uint64_t> resources_{0};
  // The decoding stage's (the caller's while there is none, or for a plain body, or once
  // drained): what is decoded and verified.
  std::uint64_t processed_raw_ = 0;
  std::uint64_t ndjson_bytes_ = 0;
  std::string limit_error_;
  BodyDecoder decoder_;
  NdjsonVerifier verifier_;
  Chunk decoded_open_;
  // The store stage's (likewise): what is written, and its hashes (raw_sha_ the caller's or the
  // decoding stage's for a body that is not plain).
  Sha256 raw_sha_;
  std::string part_name_;
  WriteBack part_write_back_;
  posix::Fd decoded_fd_;
  bool wrote_decoded_ = false;
  std::uint64_t written_decoded_ = 0;
  Sha256 decoded_sha_;
  WriteBack decoded_write_back_;
  // The workers: created together when the body passes kInlineBytes, stopped in reverse.
  ChunkPool pool_{kSpareBytes, kBatchBytes + (512 << 10)};
  std::unique_ptr<Stage> store_stage_;
  std::unique_ptr<Stage> decode_stage_;
};

}  // namespace fbr::server::download
