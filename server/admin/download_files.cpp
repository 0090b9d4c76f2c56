#include "server/admin/download_files.hpp"

#include <algorithm>

#include "server/handlers/download/records.hpp"

namespace fbr::server::admin {

std::vector<Activity::FileProgress> download_files(
    const std::string& handler, const std::filesystem::path& event_dir,
    const std::vector<Activity::FileProgress>& live) {
  std::vector<Activity::FileProgress> files;
  for (const auto& record : download::read_verified(event_dir)) {
    // The manifest and the verified list may both name a file: once on the page.
    const bool seen = std::any_of(files.begin(), files.end(), [&](const auto& f) {
      return f.url == record.url && f.file == record.file;
    });
    if (seen) continue;
    Activity::FileProgress f;
    f.handler = handler;
    f.url = record.url;
    f.file = record.file;
    f.bytes = record.bytes;
    f.expected = record.bytes;
    f.resources = record.lines;
    f.sha256 = record.sha256;
    f.verified = true;
    files.push_back(std::move(f));
  }
  for (const auto& progress : live) {
    if (progress.handler != handler) continue;
    // A file on record is done: a transfer's last report of it adds nothing.
    const bool recorded = std::any_of(files.begin(), files.end(), [&](const auto& f) {
      return f.verified && f.url == progress.url &&
             (progress.file.empty() || progress.file == f.file);
    });
    if (!recorded) files.push_back(progress);
  }
  return files;
}

}  // namespace fbr::server::admin
