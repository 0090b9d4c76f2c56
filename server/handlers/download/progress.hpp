#pragma once
// One file's progress as the console shows it (support/activity.hpp: the event's page and the
// `progress` items of /api/stream): bytes so far and expected, resources, and at the end its
// sha256 and verified, or the error of a failed try. Recorded whether or not anyone listens
// (the event's page asks progress_of() later), so at a modest rate while the bytes arrive —
// every MiB or every quarter second, whichever comes first — and always at a change of state
// (a body starts, a try fails, the file is verified).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/records.hpp"
#include "server/support/activity.hpp"

namespace fbr::server::download {

/// Whose files are reported: the delivery's event key and the handler's name.
struct ProgressTarget {
  std::string event_key;
  std::string handler;
};

/// The progress of one file of one delivery. Not shared between threads (one per transfer).
class FileReport {
 public:
  /// Records the byte counts at most once per this many bytes ...
  static constexpr std::uint64_t kEveryBytes = 1 << 20;
  /// ... or once per this long, whichever comes first.
  static constexpr std::chrono::milliseconds kEvery{250};

  /// Reports nothing (tests that drive a transfer alone).
  FileReport() = default;
  /// Reports `task` of `target` (nothing when `target` is null).
  FileReport(const ProgressTarget* target, const FileTask& task);

  /// A body starts (or a kept part file was read back): what is held so far, and the whole
  /// length when known (Content-Length, or a Range answer's total). Always recorded.
  void start(std::uint64_t bytes, std::uint64_t resources, std::optional<std::uint64_t> expected);
  /// More bytes arrived: recorded when a MiB or a quarter second has passed since the last.
  void received(std::uint64_t bytes, std::uint64_t resources);
  /// A try failed (`why`: bounded, no secret); what arrived is kept for the next try.
  void failed(const std::string& why);
  /// Stored and verified (this try, or an earlier delivery's record): bytes and expected are
  /// the stored size from now on, so the page's bar is full.
  void verified(const FileRecord& record);

 private:
  void record();

  const ProgressTarget* target_ = nullptr;
  Activity::FileProgress file_;
  std::uint64_t recorded_bytes_ = 0;
  std::chrono::steady_clock::time_point recorded_at_{};
};

}  // namespace fbr::server::download
