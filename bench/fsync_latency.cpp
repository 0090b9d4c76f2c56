// Measures the disk's durable-write floor in a directory: the latency of write + fdatasync of one
// block, appended to a growing file (like a new WAL) and rewritten in place in a preallocated file
// (like SQLite reusing its WAL after a checkpoint). No durable 200 can be faster than this.
//
//   fsync_latency --dir DIR [--count 200] [--bytes 4096]
//
// Prints one line per mode: "append p50_us=… p99_us=…" and "overwrite p50_us=… p99_us=…".
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "fsync_latency: %s\n", message.c_str());
  std::exit(1);
}

long long percentile(std::vector<long long> values, double p) {
  std::sort(values.begin(), values.end());
  const auto index = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size() - 1));
  return values[index];
}

void measure(const std::string& file, bool overwrite, std::size_t count, std::size_t bytes) {
  const int fd = ::open(file.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) fail("open " + file + ": " + strerror(errno));
  const std::vector<char> block(bytes, 'x');
  if (overwrite) {
    for (std::size_t i = 0; i < count; ++i) {
      if (::write(fd, block.data(), bytes) != static_cast<ssize_t>(bytes)) fail("write");
    }
    if (::fsync(fd) != 0) fail("fsync");
  }
  std::vector<long long> micros;
  micros.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const auto offset = static_cast<off_t>(i * bytes);
    const auto started = std::chrono::steady_clock::now();
    if (::pwrite(fd, block.data(), bytes, offset) != static_cast<ssize_t>(bytes)) fail("pwrite");
    if (::fdatasync(fd) != 0) fail("fdatasync: " + std::string(strerror(errno)));
    micros.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::steady_clock::now() - started)
                         .count());
  }
  ::close(fd);
  ::unlink(file.c_str());
  std::printf("%s p50_us=%lld p99_us=%lld\n", overwrite ? "overwrite" : "append",
              percentile(micros, 50), percentile(micros, 99));
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::size_t count = 200;
  std::size_t bytes = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view arg = argv[i];
    if (arg == "--dir") {
      dir = argv[i + 1];
    } else if (arg == "--count") {
      count = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (arg == "--bytes") {
      bytes = std::strtoul(argv[i + 1], nullptr, 10);
    } else {
      fail("unknown option " + std::string(arg));
    }
  }
  if (dir.empty() || count == 0 || bytes == 0) fail("usage: fsync_latency --dir DIR");
  const std::string file = dir + "/fsync-probe";
  measure(file, false, count, bytes);
  measure(file, true, count, bytes);
  return 0;
}
