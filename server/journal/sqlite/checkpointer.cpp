#include "server/journal/sqlite/checkpointer.hpp"

namespace fbr::server::sqlite {

Checkpointer::~Checkpointer() {
  stop();
}

std::optional<std::string> Checkpointer::start(Database& writer, const std::string& file) {
  stop();
  if (auto error = own_.open(file, false)) return "checkpointer: " + *error;
  // A connection learns that the file is in WAL mode when it first reads it; until then a
  // checkpoint on it does nothing at all.
  if (auto error = own_.exec("SELECT COUNT(*) FROM sqlite_master"))
    return "checkpointer: " + *error;
  writer_ = &writer;
  frames_ = 0;
  count_afresh();
  // Replaces SQLite's auto-checkpoint (which is itself a WAL hook) on the writer connection.
  sqlite3_wal_hook(writer.handle(), &Checkpointer::on_commit, this);
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
    requested_ = false;
  }
  thread_ = std::thread([this] { run(); });
  return std::nullopt;
}

void Checkpointer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (writer_ != nullptr && writer_->is_open())
    sqlite3_wal_hook(writer_->handle(), nullptr, nullptr);
  writer_ = nullptr;
  own_.close();
}

int Checkpointer::on_commit(void* self, sqlite3* /*db*/, const char* /*name*/, int frames) {
  auto& checkpointer = *static_cast<Checkpointer*>(self);
  // The WAL started over (a pass or a finish had copied it all back).
  if (frames < checkpointer.frames_) checkpointer.count_afresh();
  checkpointer.frames_ = frames;
  return SQLITE_OK;
}

void Checkpointer::count_afresh() {
  next_finish_at_ = kRestartFrames;
  next_pass_at_ = kBackgroundFrames;
}

void Checkpointer::after_batch() {
  if (frames_ >= next_finish_at_) {
    {
      std::lock_guard lock(mutex_);
      if (running_pass_) return;  // the thread's pass first; the next batch tries again
    }
    int log = 0;
    int done = 0;
    // PASSIVE on the writer's connection: no lock to wait for but the checkpointer's, and most
    // frames are copied back already. Once all are, the next BEGIN starts the WAL over.
    const int rc = sqlite3_wal_checkpoint_v2(writer_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                             &log, &done);
    if ((rc & 0xff) == SQLITE_BUSY)
      return;  // the thread's pass began just now: the next batch tries
    if (rc == SQLITE_OK && log == done) {
      frames_ = 0;
      count_afresh();
      std::lock_guard lock(mutex_);
      ++finishes_;
      return;
    }
    // Frames a reader still needs (the console's snapshot) stay: the thread goes on, and the
    // writer tries again once the WAL has grown some more, not after every batch.
    next_finish_at_ = frames_ + kBackgroundFrames;
  }
  // One pass per kPassFrames new frames, not one per batch once the WAL is past the threshold:
  // each pass syncs the WAL and the database file, and a pass per batch (hundreds per WAL cycle)
  // was a fifth of the server's CPU at one connection.
  if (frames_ >= next_pass_at_) {
    next_pass_at_ = frames_ + kPassFrames;
    {
      std::lock_guard lock(mutex_);
      requested_ = true;
    }
    wake_.notify_one();
  }
}

void Checkpointer::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || (requested_ && !held_); });
      if (stopping_) return;
      requested_ = false;
      running_pass_ = true;
    }
    int log = 0;
    int done = 0;
    (void)sqlite3_wal_checkpoint_v2(own_.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    std::lock_guard lock(mutex_);
    running_pass_ = false;
    ++passes_;
  }
}

void Checkpointer::hold_background(bool held) {
  {
    std::lock_guard lock(mutex_);
    held_ = held;
  }
  wake_.notify_one();
}

std::uint64_t Checkpointer::background_passes() const {
  std::lock_guard lock(mutex_);
  return passes_;
}

std::uint64_t Checkpointer::writer_finishes() const {
  std::lock_guard lock(mutex_);
  return finishes_;
}

}  // namespace fbr::server::sqlite
