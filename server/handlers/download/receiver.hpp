#pragma once
// The limits a file's bytes are held to as they arrive (transfer.hpp), and the Receiver that
// decodes and verifies them: max_file_bytes (received and NDJSON bytes), max_decompression_ratio,
// the event's max_event_bytes (EventBudget) and the download volume's free-space reserve
// (DiskReserve).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/stream.hpp"
#include "server/handlers/download/transfer.hpp"

namespace fbr::server::download {

/// "larger than max_file_bytes (<limit> bytes): the file was removed".
std::string too_large(std::uint64_t limit);

/// The download volume's free-space reserve (min_free_bytes): writes stop before they would take
/// the volume below it, so that the journal, which may live on the same disk, keeps room.
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
class Receiver {
 public:
  Receiver(const FileTask& task, bool content_encoding_gzip, const Limits& limits);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  /// The next received bytes; false when they pass a limit or fail verification (see error()).
  bool feed(std::string_view raw);
  /// The end of the body: whether the whole of it decoded and verified.
  bool finish() { return decoder_.finish() && verifier_.finish(); }
  [[nodiscard]] std::string error() const;
  /// The file is stored: it counts against the event's budget as its stored bytes from now on.
  void settle(std::uint64_t stored);
  /// The part file `fd` holds the bytes fed so far: starts their write-back (WriteBack).
  void written(int fd) { write_back_.wrote(fd, raw_bytes_); }
  [[nodiscard]] std::uint64_t raw_bytes() const { return raw_bytes_; }
  [[nodiscard]] std::string raw_sha256() const { return raw_sha_.hex(); }
  [[nodiscard]] int gzip_layers() const { return decoder_.gzip_layers(); }
  [[nodiscard]] const NdjsonVerifier& verifier() const { return verifier_; }
  /// Whether the body's decoded form went to Limits::decoded_path (then stored() is the file).
  [[nodiscard]] bool wrote_decoded() const { return wrote_decoded_; }
  /// After finish(), when wrote_decoded(): the decoded file fsync'd, its size and SHA-256.
  Stored stored_decoded();

 private:
  /// The decoded bytes to Limits::decoded_path (opened, truncated, on the first of them).
  void write_decoded(std::string_view d);
  bool decoded(std::string_view d);
  /// Counts what the file holds on disk (or will, once stored) against the event's budget.
  bool charge();

  Limits limits_;
  std::uint64_t ndjson_bytes_ = 0;
  std::uint64_t charged_ = 0;
  std::string limit_error_;
  NdjsonVerifier verifier_;
  BodyDecoder decoder_;
  Sha256 raw_sha_;
  std::uint64_t raw_bytes_ = 0;
  WriteBack write_back_;
  posix::Fd decoded_fd_;
  bool wrote_decoded_ = false;
  Sha256 decoded_sha_;
  WriteBack decoded_write_back_;
};

}  // namespace fbr::server::download
