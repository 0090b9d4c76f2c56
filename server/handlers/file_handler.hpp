#pragma once
// The `file` handler: each event's raw JSON as dir/<log-id>.json (atomic), or one NDJSON line per
// event appended to `path` (fsync'd, never twice for one event key).
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <unordered_set>

#include "server/handlers/handler.hpp"
#include "server/support/posix.hpp"

namespace fbr::server {

class FileHandler final : public Handler {
 public:
  /// Opens (and repairs, see file_handler.cpp) the NDJSON file in `path` mode. A file that cannot
  /// be opened yet is logged and retried at each delivery, so the service still starts.
  FileHandler(std::string name, config::FileHandler settings, const Logger& log);

  /// The NDJSON file's sidecar index of event keys: `<path>.keys`.
  static std::filesystem::path keys_path(const std::filesystem::path& path);

 protected:
  Outcome run(const Delivery& delivery) override;

 private:
  Outcome write_file(const Delivery& delivery);
  Outcome append_line(const Delivery& delivery);
  // Path mode, with mutex_ held.
  void open_files();
  void reconcile();
  void close_files();

  config::FileHandler settings_;
  std::mutex mutex_;
  posix::Fd lines_;               // the NDJSON file
  posix::Fd keys_;                // its sidecar index
  std::uint64_t lines_size_ = 0;  // sizes as of our last write or scan
  std::uint64_t keys_size_ = 0;
  std::unordered_set<std::string> written_;  // sidecar lines (escaped keys) of events in the file
};

}  // namespace fbr::server
