#include "server/support/posix.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <stdexcept>

namespace fbr::server::posix {
namespace {

// strerror_r is the GNU variant (returns char*) under glibc with _GNU_SOURCE, else the XSI one.
[[maybe_unused]] std::string from_strerror_r(const char* result, const char*) {
  return result;
}
[[maybe_unused]] std::string from_strerror_r(int, const char* buffer) {
  return buffer;
}

}  // namespace

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string errno_text(int error) {
  char buffer[256] = {};
  return from_strerror_r(::strerror_r(error, buffer, sizeof buffer), buffer);
}

void throw_errno(std::string_view what, int error) {
  throw std::runtime_error(std::string(what) + ": " + errno_text(error));
}

void write_all(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(what);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::uint64_t size_of(int fd, std::string_view what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno("stat " + std::string(what));
  return static_cast<std::uint64_t>(st.st_size);
}

void unlink_if_present(const std::filesystem::path& file) {
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) throw_errno("unlink " + file.string());
}

void sync(int fd, std::string_view what) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) throw_errno(std::string("fsync ") + std::string(what));
  }
}

void sync_dir(const std::filesystem::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) throw_errno("open directory " + dir.string());
  sync(fd.get(), dir.string());
}

bool write_file_atomically(const std::filesystem::path& dir, std::string_view name,
                           std::string_view bytes, Existing existing) {
  const std::filesystem::path target = dir / name;
  // Hidden while incomplete, so a consumer watching the folder never sees a partial file.
  const std::filesystem::path temp =
      dir / ("." + std::string(name) + "." + random_suffix() + ".tmp");
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) throw_errno("create " + temp.string());
  bool written = true;
  try {
    // The umask can only take bits away; this makes it exactly owner read/write.
    if (::fchmod(fd.get(), 0600) != 0) throw_errno("chmod " + temp.string());
    write_all(fd.get(), bytes, "write " + temp.string());
    sync(fd.get(), temp.string());
    if (::close(fd.release()) != 0) throw_errno("close " + temp.string());
    if (existing == Existing::kReplace) {
      if (::rename(temp.c_str(), target.c_str()) != 0) throw_errno("rename to " + target.string());
    } else {
      // link() never replaces: whatever is at the name (a file, a symlink) stays, untouched.
      if (::link(temp.c_str(), target.c_str()) != 0) {
        if (errno != EEXIST) throw_errno("link to " + target.string());
        written = false;
      }
      ::unlink(temp.c_str());
    }
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  sync_dir(dir);
  return written;
}

void make_private_dirs(const std::filesystem::path& dir) {
  if (dir.empty()) return;
  if (::mkdir(dir.c_str(), 0700) == 0) return;
  if (errno == EEXIST) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return;
    throw std::runtime_error(dir.string() + " exists and is not a directory");
  }
  if (errno != ENOENT) throw_errno("mkdir " + dir.string());
  const auto parent = dir.parent_path();
  if (parent == dir) throw_errno("mkdir " + dir.string());
  make_private_dirs(parent);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + dir.string());
}

std::string random_suffix() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t bits = rng();
  std::string out(16, '0');
  for (char& c : out) {
    c = kHex[bits & 0xf];
    bits >>= 4;
  }
  return out;
}

}  // namespace fbr::server::posix
