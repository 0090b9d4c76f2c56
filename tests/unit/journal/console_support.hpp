#pragma once
// The console tests' journal: a real SQLite file in a temporary directory, filled through the
// journal's own writer (commits and delivery updates), as serve fills it.
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/journal/sqlite/journal.hpp"

namespace fbr::test {

struct ConsoleDir {
  std::filesystem::path path;
  ConsoleDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fbr-console-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~ConsoleDir() { std::filesystem::remove_all(path); }
  ConsoleDir(const ConsoleDir&) = delete;
  ConsoleDir& operator=(const ConsoleDir&) = delete;
};

/// An event `key` (Log ID `key` unless given) received at `received_at`.
inline server::CommitRequest console_event(const std::string& key, const std::string& received_at,
                                           std::vector<std::string> handlers = {}) {
  server::CommitRequest r;
  r.key = key;
  r.log_id = key;
  r.status = 200;
  r.output_count = 2;
  r.body = R"({"Meta":{"Logs":[{"ID":")" + key + "\"}]}}";
  r.receipt = {received_at, "attempt-" + key, "127.0.0.1:1", "req-" + key};
  r.handlers = std::move(handlers);
  return r;
}

/// Runs one journal operation and waits for its result.
template <typename Op>
server::CommitResult journal_sync(Op&& op) {
  std::mutex m;
  std::condition_variable cv;
  std::optional<server::CommitResult> out;
  op([&](server::CommitResult r) {
    std::lock_guard lock(m);
    out = std::move(r);
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return out.has_value(); });
  return *out;
}

inline bool commit(server::SqliteJournal& journal, server::CommitRequest request) {
  return journal_sync([&](server::Journal::Callback done) {
           journal.commit(std::move(request), std::move(done));
         })
      .ok;
}

inline bool update(server::SqliteJournal& journal, std::vector<server::DeliveryUpdate> updates) {
  return journal_sync([&](server::Journal::Callback done) {
           journal.update(std::move(updates), std::move(done));
         })
      .ok;
}

}  // namespace fbr::test
