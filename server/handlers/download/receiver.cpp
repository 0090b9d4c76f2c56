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
  const std::lock_guard lock(mutex_);
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
  const std::lock_guard lock(mutex_);
  return "the download volume " + dir_.string() + " has " + bytes_text(free_) +
         " free, the reserve is min_free_bytes " + bytes_text(reserve_) +
         ": the transfer stopped, the delivery is retried later";
}

Receiver::Receiver(const FileTask& task, bool content_encoding_gzip, const Limits& limits)
    : limits_(limits),
      verifier_(task.expected_type, task.count),
      decoder_(content_encoding_gzip, [this](std::string_view d) { return decoded(d); }) {}

Receiver::~Receiver() {
  if (worker_.joinable()) {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
      queue_.clear();
    }
    changed_.notify_all();
    worker_.join();
  }
  if (limits_.budget != nullptr) limits_.budget->give_back(charged_);
}

bool Receiver::feed(std::string_view raw) {
  raw_bytes_ += raw.size();
  if (raw_bytes_ > limits_.max_file_bytes) {
    feed_error_ = too_large(limits_.max_file_bytes);
    return false;
  }
  if (!charge(raw_bytes_)) {
    feed_error_ = budget_error();
    return false;
  }
  // A small body (and the start of every body) is processed here: no thread for it.
  if (!worker_.joinable() && raw_bytes_ <= kInlineBytes) return process(raw);
  if (!worker_.joinable()) worker_ = std::thread([this] { work(); });

  std::string chunk;
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] {
      return worker_failed_ || queue_.empty() || queued_bytes_ + raw.size() <= kQueueBytes;
    });
    if (worker_exception_) std::rethrow_exception(worker_exception_);
    if (worker_failed_) return false;
    if (!spare_.empty()) {
      chunk = std::move(spare_.back());
      spare_.pop_back();
      spare_bytes_ -= chunk.capacity();
    }
  }
  chunk.assign(raw);
  {
    const std::lock_guard lock(mutex_);
    queued_bytes_ += chunk.size();
    queue_.push_back(std::move(chunk));
  }
  changed_.notify_all();
  return true;
}

bool Receiver::process(std::string_view raw) {
  raw_sha_.update(raw);
  processed_raw_ += raw.size();
  return decoder_.feed(raw);
}

void Receiver::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    std::string chunk = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    const bool skip = worker_failed_ || stopping_;
    lock.unlock();
    bool ok = true;
    std::exception_ptr thrown;
    if (!skip) {
      try {
        ok = process(chunk);
      } catch (...) {
        thrown = std::current_exception();
      }
    }
    lock.lock();
    queued_bytes_ -= chunk.size();
    if (spare_bytes_ + chunk.capacity() <= kSpareBytes) {
      spare_bytes_ += chunk.capacity();
      chunk.clear();
      spare_.push_back(std::move(chunk));
    }
    busy_ = false;
    if (!ok || thrown) worker_failed_ = true;
    if (thrown) worker_exception_ = thrown;
    changed_.notify_all();
  }
}

void Receiver::drain() const {
  if (!worker_.joinable()) return;
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return queue_.empty() && !busy_; });
  if (worker_exception_) std::rethrow_exception(worker_exception_);
}

bool Receiver::finish() {
  drain();
  const bool ok = decoder_.finish() && verifier_.finish();
  resources_.store(verifier_.resources(), std::memory_order_relaxed);
  return ok;
}

std::string Receiver::error() const {
  drain();
  // The worker's errors are about bytes fed before those feed() refused.
  if (!limit_error_.empty()) return limit_error_;
  if (!decoder_.error().empty()) return decoder_.error();
  if (!verifier_.error().empty()) return verifier_.error();
  return feed_error_;
}

std::string Receiver::raw_sha256() const {
  drain();
  return raw_sha_.hex();
}

int Receiver::gzip_layers() const {
  drain();
  return decoder_.gzip_layers();
}

const NdjsonVerifier& Receiver::verifier() const {
  drain();
  return verifier_;
}

bool Receiver::wrote_decoded() const {
  drain();
  return wrote_decoded_;
}

void Receiver::settle(std::uint64_t stored) {
  drain();
  if (limits_.budget == nullptr) return;
  const std::lock_guard lock(charge_mutex_);
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
  if (ndjson_bytes_ > kRatioFloor && ndjson_bytes_ / limits_.max_ratio > processed_raw_) {
    limit_error_ = std::to_string(processed_raw_) + " bytes received decode to more than " +
                   std::to_string(ndjson_bytes_) + ", past max_decompression_ratio (" +
                   std::to_string(limits_.max_ratio) + "): the file was removed";
    return false;
  }
  if (!charge(std::max(processed_raw_, limits_.store_gzip ? 0 : ndjson_bytes_))) {
    limit_error_ = budget_error();
    return false;
  }
  if (!limits_.decoded_path.empty() && !limits_.store_gzip && decoder_.gzip_layers() > 0) {
    write_decoded(d);
  }
  const bool ok = verifier_.feed(d);
  resources_.store(verifier_.resources(), std::memory_order_relaxed);
  return ok;
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
  drain();
  posix::sync(decoded_fd_.get(), limits_.decoded_path.string());
  decoded_fd_ = posix::Fd();
  return Stored{ndjson_bytes_, decoded_sha_.hex()};
}

bool Receiver::charge(std::uint64_t holds) {
  if (limits_.budget == nullptr) return true;
  const std::lock_guard lock(charge_mutex_);
  if (holds <= charged_) return true;
  if (!limits_.budget->take(holds - charged_)) return false;
  charged_ = holds;
  return true;
}

std::string Receiver::budget_error() const {
  return "the event's files would pass max_event_bytes (" +
         std::to_string(limits_.budget->limit()) + " bytes): the file was removed";
}

}  // namespace fbr::server::download
