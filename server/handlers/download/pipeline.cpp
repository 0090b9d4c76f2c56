#include "server/handlers/download/pipeline.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <utility>

namespace fbr::server::download {

std::string ChunkPool::take() {
  {
    const std::lock_guard lock(mutex_);
    if (!spare_.empty()) {
      std::string bytes = std::move(spare_.back());
      spare_.pop_back();
      kept_ -= bytes.capacity();
      return bytes;
    }
  }
  std::string bytes;
  bytes.reserve(reserve_);
  return bytes;
}

void ChunkPool::give(std::string&& bytes) {
  bytes.clear();
  const std::lock_guard lock(mutex_);
  if (bytes.capacity() < reserve_ || kept_ + bytes.capacity() > keep_) return;
  kept_ += bytes.capacity();
  spare_.push_back(std::move(bytes));
}

Stage::Stage(std::uint64_t max_queued, Work work, ChunkPool& pool, int nice)
    : max_queued_(max_queued),
      work_(std::move(work)),
      pool_(pool),
      thread_([this, nice] { run(nice); }) {}

Stage::~Stage() {
  stop();
  thread_.join();
}

void Stage::stop() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
    queued_bytes_ = 0;
  }
  changed_.notify_all();
}

bool Stage::push(Chunk&& chunk) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] {
    return failed_ || stopping_ || queue_.empty() ||
           queued_bytes_ + chunk.bytes.size() <= max_queued_;
  });
  if (thrown_) std::rethrow_exception(thrown_);
  if (failed_ || stopping_) return false;
  queued_bytes_ += chunk.bytes.size();
  queue_.push_back(std::move(chunk));
  lock.unlock();
  changed_.notify_all();
  return true;
}

void Stage::drain() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return queue_.empty() && !busy_; });
  if (thrown_) std::rethrow_exception(thrown_);
}

void Stage::run(int nice) {
  if (nice > 0) {
    // This thread only (Linux: a thread's id is a process id here); best effort.
    const auto self = static_cast<id_t>(::syscall(SYS_gettid));
    (void)::setpriority(PRIO_PROCESS, self, ::getpriority(PRIO_PROCESS, self) + nice);
  }
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    Chunk chunk = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= chunk.bytes.size();
    busy_ = true;
    const bool skip = failed_ || stopping_;
    lock.unlock();
    // There is room now: a pusher need not wait for this chunk to be processed.
    changed_.notify_all();
    bool ok = true;
    std::exception_ptr thrown;
    if (!skip) {
      try {
        ok = work_(chunk);
      } catch (...) {
        thrown = std::current_exception();
      }
    }
    pool_.give(std::move(chunk.bytes));
    lock.lock();
    busy_ = false;
    if (!ok || thrown) failed_ = true;
    if (thrown && !thrown_) thrown_ = thrown;
    changed_.notify_all();
  }
}

}  // namespace fbr::server::download
