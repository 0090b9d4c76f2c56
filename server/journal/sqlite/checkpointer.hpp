#pragma once
// The journal's WAL checkpoints, out of the commit path. SQLite's own auto-checkpoint runs inside
// the COMMIT that crosses its threshold: that client waits for a copy of thousands of pages into
// the database file and its fsync (the tens of milliseconds in the ingest tail). Here the writer
// only notes the WAL's size after each commit (on_commit); a thread of its own copies frames back
// with PASSIVE checkpoints, which never block the writer: a first pass at kBackgroundFrames, then
// one per kPassFrames new frames (each pass syncs the WAL and the database file). A passive
// checkpoint cannot let the WAL start over while commits keep coming, so past kRestartFrames the
// writer itself, between two batches (after their answers went), finishes the few frames left
// (after_batch): then the next transaction rewrites the WAL from its start instead of appending
// to an ever longer file.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "server/journal/sqlite/database.hpp"

namespace fbr::server::sqlite {

class Checkpointer {
 public:
  /// WAL frames (pages) after which the background thread copies them back (SQLite's default).
  static constexpr int kBackgroundFrames = 1000;
  /// New frames between two passes of the background thread: also the most the writer's own
  /// finish at kRestartFrames has left to copy.
  static constexpr int kPassFrames = 500;
  /// WAL frames after which the writer finishes a checkpoint itself, so the WAL starts over.
  static constexpr int kRestartFrames = 4000;

  Checkpointer() = default;
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;
  ~Checkpointer();

  /// Takes over the writer connection's WAL hook and starts the thread with a connection of its
  /// own to `file`. Returns an error message, or nullopt.
  std::optional<std::string> start(Database& writer, const std::string& file);
  /// Stops the thread (after the pass under way) and closes its connection.
  void stop();

  /// The writer, between batches: wakes the thread when the WAL has grown, or finishes a
  /// checkpoint on the writer's own connection when it has grown past kRestartFrames.
  void after_batch();
  /// Whether after_batch() would finish a checkpoint (the WAL is past kRestartFrames).
  [[nodiscard]] bool finish_due() const { return frames_ >= next_finish_at_; }

  /// For the tests: while held, the thread starts no pass (as if it could not keep up), so the
  /// writer's own finishes alone must keep the WAL from growing.
  void hold_background(bool held);

  /// Passive checkpoints of the thread that copied pages back, and writer-side finishes that let
  /// the WAL start over, so far (for tests).
  [[nodiscard]] std::uint64_t background_passes() const;
  [[nodiscard]] std::uint64_t writer_finishes() const;

 private:
  static int on_commit(void* self, sqlite3* db, const char* name, int frames);
  /// The thresholds of a WAL that starts from its first frame.
  void count_afresh();
  void run();

  Database* writer_ = nullptr;
  Database own_;
  int frames_ = 0;  // the WAL's frames after the last commit (writer thread only)
  int next_finish_at_ = kRestartFrames;   // writer thread only
  int next_pass_at_ = kBackgroundFrames;  // writer thread only
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool requested_ = false;
  bool stopping_ = false;
  bool running_pass_ = false;
  bool held_ = false;
  std::uint64_t passes_ = 0;
  std::uint64_t finishes_ = 0;
  std::thread thread_;
};

}  // namespace fbr::server::sqlite
