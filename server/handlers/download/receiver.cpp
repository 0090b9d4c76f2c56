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
// The store stage has time to spare (writing and verifying cost less than receiving and hashing
// or decoding): at a lower priority it leaves the thread the pipeline waits for its core.
constexpr int kStoreNice = 5;

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
      decoder_(content_encoding_gzip, [this](std::string_view d) { return decoded(d); }),
      verifier_(task.expected_type, task.count) {}

Receiver::~Receiver() {
  // The store stage first: the decoding one may be waiting for room in its queue.
  if (store_stage_) store_stage_->stop();
  decode_stage_.reset();
  store_stage_.reset();
  if (limits_.budget != nullptr) limits_.budget->give_back(charged_);
}

bool Receiver::feed(std::string_view raw, int part_fd, std::string_view part_name) {
  raw_bytes_ += raw.size();
  if (raw_bytes_ > limits_.max_file_bytes) {
    feed_error_ = too_large(limits_.max_file_bytes);
    return false;
  }
  if (!charge(raw_bytes_)) {
    feed_error_ = budget_error();
    return false;
  }
  if (part_fd >= 0 && part_name_.empty()) part_name_ = part_name;
  // A small body (and the start of every body) is processed here: no thread for it.
  if (!store_stage_ && raw_bytes_ <= kInlineBytes) {
    if (part_fd >= 0) write_part(part_fd, raw, raw_bytes_);
    return process(raw);
  }
  if (!store_stage_) {
    plain_ = decoder_.passthrough();
    store_stage_ = std::make_unique<Stage>(
        kQueueBytes, [this](Chunk& c) { return store_chunk(c); }, pool_, kStoreNice);
    if (!plain_) {
      decode_stage_ = std::make_unique<Stage>(
          kQueueBytes, [this](Chunk& c) { return process_chunk(c); }, pool_);
    }
  }
  if (plain_) {
    // The decoder would pass the bytes on as they are: they are admitted and hashed here, where
    // the read left them in this core's cache, then gathered for the store stage, which writes
    // them to the part file (the caller no longer waits for that) and verifies them.
    processed_raw_ += raw.size();
    if (!admit(raw.size())) return false;
    raw_sha_.update(raw);
    if (!open_.bytes.empty() && open_.part_fd != part_fd && !push_open()) return false;
    if (open_.bytes.empty()) {
      open_.bytes = pool_.take();
      open_.part_fd = part_fd;
      open_.verify = true;
    }
    open_.bytes.append(raw);
    open_.part_end = raw_bytes_;
    return open_.bytes.size() < kBatchBytes || push_open();
  }
  // A gzip body (or one not known to be plain): its raw part file, small, is written here.
  if (part_fd >= 0) write_part(part_fd, raw, raw_bytes_);
  if (open_.bytes.empty()) open_.bytes = pool_.take();
  open_.bytes.append(raw);
  return open_.bytes.size() < kBatchBytes || push_open();
}

void Receiver::flush() {
  // Refused: a stage has failed; the next feed() or error() says why.
  if (store_stage_ && !open_.bytes.empty()) (void)push_open();
}

bool Receiver::push_open() {
  Chunk chunk = std::move(open_);
  open_ = Chunk{};
  return (plain_ ? store_stage_ : decode_stage_)->push(std::move(chunk));
}

bool Receiver::push_decoded() {
  Chunk chunk = std::move(decoded_open_);
  decoded_open_ = Chunk{};
  return store_stage_->push(std::move(chunk));
}

void Receiver::write_part(int fd, std::string_view bytes, std::uint64_t end) {
  // Taken where the bytes are written, so that the free space the reserve sees next is after
  // them (the part file's writes may lag the received bytes by the queue).
  take_reserve(bytes.size());
  posix::write_all(fd, bytes, "write " + part_name_);
  part_write_back_.wrote(fd, end);
}

bool Receiver::process(std::string_view raw) {
  raw_sha_.update(raw);
  processed_raw_ += raw.size();
  return decoder_.feed(raw);
}

bool Receiver::process_chunk(Chunk& chunk) {
  return process(chunk.bytes) && (decoded_open_.bytes.empty() || push_decoded());
}

void Receiver::drain() {
  if (!store_stage_) return;
  flush();
  if (decode_stage_) decode_stage_->drain();
  if (!decoded_open_.bytes.empty()) (void)push_decoded();
  store_stage_->drain();
}

bool Receiver::finish() {
  drain();
  // The decoder's last bytes come here, on the caller's thread, the workers idle.
  bool ok = decoder_.finish();
  if (store_stage_) {
    if (!decoded_open_.bytes.empty()) ok = push_decoded() && ok;
    store_stage_->drain();
  }
  ok = ok && verifier_.finish();
  resources_.store(verifier_.resources(), std::memory_order_relaxed);
  return ok;
}

std::string Receiver::error() {
  drain();
  // The workers' errors are about bytes fed before those feed() refused.
  if (!limit_error_.empty()) return limit_error_;
  if (!decoder_.error().empty()) return decoder_.error();
  if (!verifier_.error().empty()) return verifier_.error();
  return feed_error_;
}

std::string Receiver::raw_sha256() {
  drain();
  return raw_sha_.hex();
}

int Receiver::gzip_layers() {
  drain();
  return decoder_.gzip_layers();
}

const NdjsonVerifier& Receiver::verifier() {
  drain();
  return verifier_;
}

bool Receiver::wrote_decoded() {
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

bool Receiver::admit(std::size_t bytes) {
  ndjson_bytes_ += bytes;
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
  return true;
}

bool Receiver::decoded(std::string_view d) {
  if (!admit(d.size())) return false;
  if (limits_.decoded_path.empty() || limits_.store_gzip || decoder_.gzip_layers() == 0) {
    return verify(d);
  }
  if (!store_stage_) {
    write_decoded(d);
    return verify(d);
  }
  // On the decoding stage: verified here, where the decoder left the bytes in this core's
  // cache, and gathered for the store stage, which writes and hashes them.
  if (!verify(d)) return false;
  if (decoded_open_.bytes.empty()) {
    decoded_open_.bytes = pool_.take();
    decoded_open_.to_decoded = true;
  }
  decoded_open_.bytes.append(d);
  return decoded_open_.bytes.size() < kBatchBytes || push_decoded();
}

bool Receiver::verify(std::string_view d) {
  const bool ok = verifier_.feed(d);
  resources_.store(verifier_.resources(), std::memory_order_relaxed);
  return ok;
}

bool Receiver::store_chunk(Chunk& chunk) {
  if (chunk.part_fd >= 0) write_part(chunk.part_fd, chunk.bytes, chunk.part_end);
  if (chunk.to_decoded) write_decoded(chunk.bytes);
  return !chunk.verify || verify(chunk.bytes);
}

void Receiver::write_decoded(std::string_view d) {
  const std::string& path = limits_.decoded_path.native();
  if (!decoded_fd_.valid()) {
    decoded_fd_ = posix::Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!decoded_fd_.valid()) posix::throw_errno("create " + path);
    wrote_decoded_ = true;
  }
  take_reserve(d.size());
  posix::write_all(decoded_fd_.get(), d, "write " + path);
  decoded_sha_.update(d);
  written_decoded_ += d.size();
  decoded_write_back_.wrote(decoded_fd_.get(), written_decoded_);
}

void Receiver::take_reserve(std::size_t bytes) {
  // Thrown, so that the transfer stops as a local (transient) failure.
  if (limits_.reserve != nullptr && !limits_.reserve->take(bytes)) {
    throw std::runtime_error(limits_.reserve->message());
  }
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
