#pragma once
// The durable journal: SQLite (WAL, synchronous=FULL) under data_dir. One writer thread takes
// commits from a queue and makes one transaction, hence one fsync, per batch (group commit).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/sqlite.hpp"

namespace fbr::server {

/// How a request arrived: stored with every attempt.
struct Receipt {
  std::string received_at;  ///< ISO 8601 UTC
  std::string attempt_id;   ///< Redox's Meta.Logs[0].AttemptID, or one we generated
  std::string remote_addr;
  std::string request_id;
};

/// A valid event to journal (or, with `quarantine`, an invalid body to keep with its errors).
struct CommitRequest {
  bool quarantine = false;
  std::string key;
  std::string log_id;
  int status = 0;
  std::optional<bool> test;
  std::int64_t output_count = 0;
  std::string body;
  std::string errors_json;  ///< quarantine only: JSON array of {path, message}
  Receipt receipt;
};

struct CommitResult {
  bool ok = false;
  bool duplicate = false;
  std::string error;  ///< why the commit failed (SQLite's message)
};

class Journal {
 public:
  using Callback = std::function<void(CommitResult)>;

  /// The journal file under a data dir.
  static std::filesystem::path file_in(const std::filesystem::path& data_dir);

  /// Creates data_dir (0700) and the schema, starts the writer thread. Error message or nullopt.
  std::optional<std::string> open(const std::filesystem::path& data_dir);
  ~Journal();

  /// Queues a commit; `done` runs on the writer thread after the batch's fsync (or its failure).
  void commit(CommitRequest request, Callback done);

  /// Writable as far as we know: the last commit succeeded and the file system is not read-only
  /// or full.
  [[nodiscard]] bool writable() const;

  /// Finishes queued commits, then stops the writer thread and closes the file.
  void stop();

 private:
  struct Pending {
    CommitRequest request;
    Callback done;
  };
  void run();
  std::optional<std::string> connect();
  std::optional<std::string> write_batch(std::vector<Pending>& batch,
                                         std::vector<CommitResult>& results);

  std::filesystem::path data_dir_;
  sqlite::Database db_;
  sqlite::Statement insert_event_, insert_attempt_, insert_quarantine_;
  bool needs_reconnect_ = false;
  std::atomic<bool> last_commit_ok_{true};

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread writer_;
};

/// Read side, for the CLI (`events`) and tests: a separate read-only connection.
struct AttemptRow {
  std::string attempt_id, received_at, remote_addr, request_id;
  bool duplicate = false;
};
struct EventRow {
  std::string key, log_id, received_at;
  int status = 0;
  std::int64_t output_count = 0;
  std::vector<AttemptRow> attempts;
};

/// Lists journaled events, newest first; empty `log_id` = all. Error message in `error`.
std::vector<EventRow> list_events(const std::filesystem::path& data_dir, const std::string& log_id,
                                  int limit, std::string& error);

}  // namespace fbr::server
