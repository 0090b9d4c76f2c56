#pragma once
// Small POSIX helpers the handlers share: an owning file descriptor, thread-safe errno text and
// durable writes. Failures throw std::runtime_error with "what: reason" (Handler::deliver turns
// them into retries).
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace fbr::server::posix {

/// Owns one file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1);
  /// Gives up ownership (e.g. to close() it and check the result).
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

/// strerror, thread-safe.
std::string errno_text(int error);

/// Throws std::runtime_error("<what>: <strerror(error)>").
[[noreturn]] void throw_errno(std::string_view what, int error = errno);

/// Writes every byte to a blocking descriptor (retries short writes and EINTR); throws.
void write_all(int fd, std::string_view data, std::string_view what);

/// The size of an open file (fstat); throws "stat <what>: reason".
std::uint64_t size_of(int fd, std::string_view what);

/// unlink, where a file that is not there is no error; throws "unlink <file>: reason".
void unlink_if_present(const std::filesystem::path& file);

/// fsync, retried on EINTR; throws naming `what`.
void sync(int fd, std::string_view what);

/// fsyncs a directory so that a create/rename/truncate inside it is durable; throws.
void sync_dir(const std::filesystem::path& dir);

/// What write_file_atomically does when something is already at the name.
enum class Existing { kReplace, kKeep };
/// Writes `bytes` to dir/name atomically: a hidden temp file (".<name>.<random>.tmp", 0600),
/// fsync, then rename over the name (kReplace) or link to it only when nothing is there (kKeep:
/// false, nothing changed, when something was), fsync of the directory; the temp file is removed
/// in every case. Throws.
bool write_file_atomically(const std::filesystem::path& dir, std::string_view name,
                           std::string_view bytes, Existing existing = Existing::kReplace);

/// mkdir -p, creating missing directories with mode 0700 (owner-only); throws.
void make_private_dirs(const std::filesystem::path& dir);

/// 16 random hex digits, for temporary file names.
std::string random_suffix();

}  // namespace fbr::server::posix
