#include "server/admin/download_files.hpp"

#include <algorithm>

#include "server/handlers/download/records.hpp"

namespace fbr::server::admin {

std::vector<Activity::FileProgress> download_files(
    const std::string& handler, const std::filesystem::path& event_dir,
    const std::vector<Activity::FileProgress>& live) {
  std::vector<Activity::FileProgress> files;
  const auto add = [&](const std::string& url, const std::string& file, std::uint64_t bytes,
                       std::uint64_t resources, const std::string& sha256) {
    // The manifest and the verified list may both name a file: once on the page.
    const bool seen = std::any_of(files.begin(), files.end(),
                                  [&](const auto& f) { return f.url == url && f.file == file; });
    if (seen) return;
    Activity::FileProgress f;
    f.handler = handler;
    f.url = url;
    f.file = file;
    f.bytes = bytes;
    f.expected = bytes;
    f.resources = resources;
    f.sha256 = sha256;
    f.verified = true;
    files.push_back(std::move(f));
  };
  for (const auto& record : download::read_verified(event_dir)) {
    add(record.url, record.file, record.bytes, record.lines, record.sha256);
  }
  // The DocumentReference attachments stored beside them (attachments/<sha256>.<ext>), one row
  // per URL: no resources of their own.
  for (const auto& record : download::read_verified_attachments(event_dir)) {
    add(record.url, record.file, record.bytes, 0, record.sha256);
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
