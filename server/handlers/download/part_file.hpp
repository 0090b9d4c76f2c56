#pragma once
// A file's bytes while they are received (transfer.hpp): the hidden part file next to the final
// one (".<name>.part", 0600) and its sidecar (".<name>.part.json"), which notes how the server
// sent them, so that a later try (or a later process) can ask for the rest with a Range request.
// The part file is read back in chunks (to replay it through the verifier when a try resumes)
// and, when the stored form differs from the received one, transcoded into that form.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/support/posix.hpp"

namespace fbr::server::download {

class DiskReserve;

/// The hidden names used while a file is received: ".<name>.part" and ".<name>.part.json".
std::filesystem::path part_path(const std::filesystem::path& final_path);
std::filesystem::path part_info_path(const std::filesystem::path& final_path);

/// How the server sent the bytes in a part file (its sidecar), so that a later try can resume.
struct PartInfo {
  std::string url_sha256;  ///< of the file's URL (its query may hold credentials: not the URL)
  bool content_encoding_gzip = false;
  bool accept_ranges = false;
  std::string validator;  ///< a strong ETag or a Last-Modified date, for If-Range
  std::optional<std::uint64_t> length;
};

/// The sidecar's JSON: {"urlSha256", "contentEncodingGzip", "acceptRanges", "validator", "length"}.
std::string part_info_json(const PartInfo& info);
/// The sidecar in `file`; nullopt when it is missing or not a complete sidecar.
std::optional<PartInfo> read_part_info(const std::filesystem::path& file);
/// Writes the sidecar (no fsync: a part file whose sidecar is lost is only received again).
void write_part_info(const std::filesystem::path& file, const PartInfo& info);

/// The buffer the part file is read back through.
inline constexpr std::size_t kCopyBuffer = 256 * 1024;

/// Calls `each` with consecutive chunks of the first `size` bytes of `fd`; stops when it
/// returns false (then false).
template <class Each>
bool read_chunks(int fd, std::uint64_t size, const std::string& what, Each&& each) {
  std::vector<char> buffer(kCopyBuffer);
  std::uint64_t offset = 0;
  while (offset < size) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - offset));
    const ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      posix::throw_errno("read " + what);
    }
    if (n == 0) break;
    if (!each(std::string_view(buffer.data(), static_cast<std::size_t>(n)))) return false;
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

/// Starts the kernel's write-back of a file while it is being written: every kWriteBackStep
/// bytes, sync_file_range(SYNC_FILE_RANGE_WRITE) of what was written since (asynchronous: it
/// does not wait for the disk), so that the fsync at the end finds little left to write.
class WriteBack {
 public:
  static constexpr std::uint64_t kWriteBackStep = 8 << 20;
  /// `fd` now holds `end` bytes.
  void wrote(int fd, std::uint64_t end);

 private:
  std::uint64_t started_ = 0;  // written back up to here
};

/// What a stored file holds.
struct Stored {
  std::uint64_t bytes = 0;
  std::string sha256;
};

/// The first `size` bytes of the part file as the stored form, written (0600) and fsync'd to
/// `out_path`: every gzip layer undone, then gzip'd again when `gzip`. Throws
/// std::runtime_error when the bytes do not decode or `reserve` refuses them.
Stored transcode(int part_fd, std::uint64_t size, const std::string& part_name,
                 bool content_encoding_gzip, bool gzip, const std::filesystem::path& out_path,
                 DiskReserve& reserve);

}  // namespace fbr::server::download
