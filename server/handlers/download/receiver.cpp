#include "server/handlers/download/receiver.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "server/support/posix.hpp"

namespace fbr::server::download {
namespace {

// The ratio limit starts to count past this many NDJSON bytes: the first chunks of an ordinary
// file can decode to many times their size before the stream settles.
constexpr std::uint64_t kRatioFloor = 1 << 20;
// Between two looks at the free space, at most this much is written (less near the reserve).
constexpr std::uint64_t kMaxUnchecked = 64ULL << 20;
constexpr std::uint64_t kDefaultReserveCap = 1ULL << 30;

std::string bytes_text(std::uint64_t bytes) {
  char mib[32];
  std::snprintf(mib, sizeof mib, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return std::string(mib) + " (" + std::to_string(bytes) + " bytes)";
}

}  // namespace

std::string too_large(std::uint64_t limit) {
  return "larger than max_file_bytes (" + std::to_string(limit) + " bytes): the file was removed";
}

std::filesystem::path stored_temp_path(const std::filesystem::path& final_path) {
  return final_path.parent_path() / ("." + final_path.filename().string() + ".tmp");
}

bool EventBudget::take(std::uint64_t bytes) {
  std::uint64_t used = used_.load();
  do {
    if (used > limit_ || limit_ - used < bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return true;
}

bool DiskReserve::take(std::uint64_t bytes) {
  if (bytes <= unchecked_) {
    unchecked_ -= bytes;
    return true;
  }
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) posix::throw_errno("statvfs " + dir_.string());
  const std::uint64_t size = static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize;
  free_ = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  reserve_ = min_free_ ? *min_free_ : std::min(size / 20, kDefaultReserveCap);
  if (free_ < reserve_ || free_ - reserve_ < bytes) return false;
  // Other writers share the volume: use only part of what is left before looking again.
  unchecked_ = std::min((free_ - reserve_ - bytes) / 8, kMaxUnchecked);
  return true;
}

std::string DiskReserve::message() const {
  return "the download volume " + dir_.string() + " has " + bytes_text(free_) +
         " free, the reserve is min_free_bytes " + bytes_text(reserve_) +
         ": the transfer stopped, the delivery is retried later";
}

Receiver::Receiver(const FileTask& task, bool content_encoding_gzip, const Limits& limits)
    : limits_(limits),
      verifier_(task.expected_type, task.count),
      decoder_(content_encoding_gzip, [this](std::string_view d) { return decoded(d); }) {}

Receiver::~Receiver() {
  if (limits_.budget != nullptr) limits_.budget->give_back(charged_);
}

bool Receiver::feed(std::string_view raw) {
  raw_sha_.update(raw);
  raw_bytes_ += raw.size();
  if (raw_bytes_ > limits_.max_file_bytes) {
    limit_error_ = too_large(limits_.max_file_bytes);
    return false;
  }
  return charge() && decoder_.feed(raw);
}

std::string Receiver::error() const {
  if (!limit_error_.empty()) return limit_error_;
  return decoder_.error().empty() ? verifier_.error() : decoder_.error();
}

void Receiver::settle(std::uint64_t stored) {
  if (limits_.budget == nullptr) return;
  limits_.budget->give_back(charged_);
  limits_.budget->add(stored);
  charged_ = 0;
}

bool Receiver::decoded(std::string_view d) {
  ndjson_bytes_ += d.size();
  if (ndjson_bytes_ > limits_.max_file_bytes) {
    limit_error_ = "its NDJSON is larger than max_file_bytes (" +
                   std::to_string(limits_.max_file_bytes) + " bytes): the file was removed";
    return false;
  }
  if (ndjson_bytes_ > kRatioFloor && ndjson_bytes_ / limits_.max_ratio > raw_bytes_) {
    limit_error_ = std::to_string(raw_bytes_) + " bytes received decode to more than " +
                   std::to_string(ndjson_bytes_) + ", past max_decompression_ratio (" +
                   std::to_string(limits_.max_ratio) + "): the file was removed";
    return false;
  }
  if (!charge()) return false;
  if (!limits_.decoded_path.empty() && !limits_.store_gzip && decoder_.gzip_layers() > 0) {
    write_decoded(d);
  }
  return verifier_.feed(d);
}

void Receiver::write_decoded(std::string_view d) {
  const std::string& path = limits_.decoded_path.native();
  if (!decoded_fd_.valid()) {
    decoded_fd_ = posix::Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!decoded_fd_.valid()) posix::throw_errno("create " + path);
    wrote_decoded_ = true;
  }
  // The volume's reserve: thrown, so that the transfer stops as a local (transient) failure.
  if (limits_.reserve != nullptr && !limits_.reserve->take(d.size())) {
    throw std::runtime_error(limits_.reserve->message());
  }
  posix::write_all(decoded_fd_.get(), d, "write " + path);
  decoded_sha_.update(d);
  decoded_write_back_.wrote(decoded_fd_.get(), ndjson_bytes_);
}

Stored Receiver::stored_decoded() {
  posix::sync(decoded_fd_.get(), limits_.decoded_path.string());
  decoded_fd_ = posix::Fd();
  return Stored{ndjson_bytes_, decoded_sha_.hex()};
}

bool Receiver::charge() {
  if (limits_.budget == nullptr) return true;
  const std::uint64_t holds = std::max(raw_bytes_, limits_.store_gzip ? 0 : ndjson_bytes_);
  if (holds <= charged_) return true;
  if (!limits_.budget->take(holds - charged_)) {
    limit_error_ = "the event's files would pass max_event_bytes (" +
                   std::to_string(limits_.budget->limit()) + " bytes): the file was removed";
    return false;
  }
  charged_ = holds;
  return true;
}

}  // namespace fbr::server::download
