#include "server/handlers/download/progress.hpp"

namespace fbr::server::download {

FileReport::FileReport(const ProgressTarget* target, const FileTask& task) : target_(target) {
  if (target_ == nullptr) return;
  file_.handler = target_->handler;
  file_.url = task.shown_url();
  file_.file = task.file;
}

void FileReport::start(std::uint64_t bytes, std::uint64_t resources,
                       std::optional<std::uint64_t> expected) {
  file_.bytes = bytes;
  file_.resources = resources;
  file_.expected = expected;
  file_.error.clear();
  record();
}

void FileReport::received(std::uint64_t bytes, std::uint64_t resources) {
  if (target_ == nullptr) return;
  file_.bytes = bytes;
  file_.resources = resources;
  // The clock is read only when the bytes alone do not decide (a chunk is up to 512 KiB).
  if (bytes >= recorded_bytes_ && bytes - recorded_bytes_ < kEveryBytes &&
      std::chrono::steady_clock::now() - recorded_at_ < kEvery) {
    return;
  }
  record();
}

void FileReport::failed(const std::string& why) {
  file_.error = why;
  // Also after verified(): a file whose record could not be written is fetched again.
  file_.verified = false;
  file_.sha256.clear();
  record();
}

void FileReport::verified(const FileRecord& record) {
  file_.file = record.file;
  file_.bytes = record.bytes;
  file_.expected = record.bytes;
  file_.resources = record.lines;
  file_.sha256 = record.sha256;
  file_.verified = true;
  file_.error.clear();
  this->record();
}

void FileReport::record() {
  if (target_ == nullptr) return;
  recorded_bytes_ = file_.bytes;
  recorded_at_ = std::chrono::steady_clock::now();
  activity().progress(target_->event_key, file_);
}

}  // namespace fbr::server::download
