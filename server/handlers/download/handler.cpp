#include "server/handlers/download/handler.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <optional>
#include <vector>

#include "core/event.hpp"
#include "server/handlers/download/parallel.hpp"
#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/progress.hpp"
#include "server/handlers/download/records.hpp"
#include "server/handlers/download/stream.hpp"
#include "server/support/posix.hpp"

namespace fbr::server {
namespace {

using Clock = std::chrono::steady_clock;
using download::FileRecord;
using download::FileTask;
using download::TransferResult;

constexpr std::size_t kMaxMessage = 1500;
constexpr std::size_t kHashBuffer = 256 * 1024;

/// An exclusive, non-blocking flock on <dir>/.lock: one delivery per event folder at a time
/// (two handlers with one dir, or an old instance still running after a reload).
class FolderLock {
 public:
  explicit FolderLock(const std::filesystem::path& dir) {
    const auto file = dir / ".lock";
    fd_.reset(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd_.valid()) posix::throw_errno("open " + file.string());
    while (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) posix::throw_errno("lock " + file.string());
      fd_.reset();
      return;
    }
  }
  [[nodiscard]] bool held() const { return fd_.valid(); }

 private:
  posix::Fd fd_;  // closing it releases the lock
};

/// Hex SHA-256 of a file, or nullopt when it cannot be read.
std::optional<std::string> sha256_of_file(const std::filesystem::path& file) {
  posix::Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  download::Sha256 sha;
  std::vector<char> buffer(kHashBuffer);
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (n == 0) break;
    sha.update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
  return sha.hex();
}

/// The record of a file verified by an earlier attempt, if it is still there, intact.
std::optional<FileRecord> still_verified(const FileTask& task,
                                         const download::VerifiedRecords& records,
                                         const std::filesystem::path& event_dir) {
  for (const FileRecord* r : records.of(task)) {
    if (sha256_of_file(event_dir / r->file) == r->sha256) return *r;
  }
  return std::nullopt;
}

/// "2 of 5 files failed: ...", or "... attachments ..." (`noun` singular).
std::string summary(const std::vector<TransferResult>& failures, std::size_t files,
                    const std::string& noun = "file") {
  std::string out = std::to_string(failures.size()) + " of " + std::to_string(files) + " " + noun +
                    (files == 1 ? "" : "s") + " failed: ";
  for (std::size_t i = 0; i < failures.size(); ++i) {
    if (i > 0) out += "; ";
    out += failures[i].message;
    if (out.size() > kMaxMessage) {
      out.resize(kMaxMessage);
      out += "...";
      break;
    }
  }
  return out;
}

}  // namespace

DownloadHandler::DownloadHandler(std::string name, config::DownloadHandler settings,
                                 const Logger& log)
    : Handler(std::move(name), log),
      settings_(std::move(settings)),
      tokens_(settings_, this->name()) {
  if (settings_.dir.empty()) {
    throw std::runtime_error("handler " + this->name() + ": download needs a dir");
  }
  transfer_.store_gzip = settings_.store == "gzip";
  transfer_.connect_timeout = std::chrono::milliseconds(settings_.connect_timeout_ms);
  transfer_.idle_timeout = std::chrono::milliseconds(settings_.idle_timeout_ms);
  transfer_.min_speed_bytes_per_s = static_cast<long>(settings_.min_speed_bytes_per_s);
  transfer_.min_speed_window = std::chrono::seconds(settings_.min_speed_window_s);
  transfer_.attempts = static_cast<int>(settings_.transfer_attempts);
  transfer_.max_wait = std::chrono::milliseconds(settings_.max_retry_wait_ms);
  transfer_.policy = egress::Policy(settings_.egress);
  // Once per handler, not per file: a named proxy is resolved here.
  transfer_.proxies = egress::environment_proxies();
  transfer_.max_file_bytes = settings_.max_file_bytes;
  transfer_.max_decompression_ratio = settings_.max_decompression_ratio;
  transfer_.min_free_bytes = settings_.min_free_bytes;
  attachments_.enabled = settings_.attachments.mode == "download";
  attachments_.types = settings_.attachments.types;
  attachments_.max_bytes = settings_.attachments.max_bytes;
  attachments_.max_count = settings_.attachments.max_count;
  attachments_.parallel = static_cast<std::size_t>(settings_.parallel);
}

Outcome DownloadHandler::run(const Delivery& delivery) {
  const auto started = Clock::now();
  // Parsed once by the dispatcher that built the delivery (handler.hpp).
  if (delivery.parsed == nullptr) return Outcome::dead("the delivery carries no parsed event");
  const core::ParseResult& parsed = *delivery.parsed;
  if (!parsed.ok()) {
    const auto& e = parsed.errors.front();
    return Outcome::dead("the event is not a valid status-check-response: " +
                         (e.path.empty() ? std::string("(root)") : e.path) + ": " + e.message);
  }
  const core::Event& event = *parsed.event;
  const std::string log_id(core::log_id_or_key(delivery.log_id, delivery.event_key));
  if (event.status != 200) {
    log().info("download_skipped", log()
                                       .fields()
                                       .add("log_id", log_id)
                                       .add("handler", name())
                                       .add("status", event.status)
                                       .add("reason", "export in progress: no files yet"));
    return Outcome::done();
  }
  // Bounded before any folder, thread or request: output[] has no bound of its own.
  if (const std::size_t files = event.output.size() + event.error.size() + event.deleted.size();
      files > settings_.max_files) {
    return Outcome::dead("the event lists " + std::to_string(files) +
                         " files (output, error and deleted together), more than handler " +
                         name() + "'s max_files (" + std::to_string(settings_.max_files) + ")");
  }
  const bool needs_token = event.requires_access_token.value_or(false);
  if (needs_token && !tokens_.configured()) {
    return Outcome::dead("the event's requiresAccessToken is true, but handler " + name() +
                         " has no token_env, token_file, token_command or auth");
  }

  const std::filesystem::path event_dir =
      std::filesystem::path(settings_.dir) / file_stem(delivery.event_key);
  posix::make_private_dirs(event_dir);
  FolderLock lock(event_dir);
  if (!lock.held()) {
    return Outcome::retry("another delivery is downloading into " + event_dir.string());
  }

  const std::vector<FileTask> tasks = download::plan_files(event, transfer_.store_gzip);
  const download::VerifiedRecords verified(download::read_verified(event_dir));
  const download::ProgressTarget progress{delivery.event_key, name()};
  std::vector<download::FileReport> reports;
  reports.reserve(tasks.size());
  std::vector<std::optional<FileRecord>> records(tasks.size());
  std::vector<std::size_t> todo;
  std::uint64_t stored = 0;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    reports.emplace_back(&progress, tasks[i]);
    records[i] = still_verified(tasks[i], verified, event_dir);
    if (!records[i]) todo.push_back(i);
    // Skipped, but shown: the event's page lists every file of the delivery.
    if (records[i]) {
      stored += records[i]->bytes;
      reports[i].verified(*records[i]);
    }
  }
  download::EventBudget budget(settings_.max_event_bytes, stored);

  download::ExportLog export_log(event_dir / download::kLogFile, log_id);
  download::TokenSession session(tokens_);
  const download::EventContext context{needs_token ? &session : nullptr,
                                       transfer_.policy.token_hosts(event.request), &budget};
  std::mutex mutex;
  std::vector<TransferResult> failures;

  const auto fetch = [&](std::size_t i) {
    const FileTask& task = tasks[i];
    TransferResult r;
    try {
      export_log.write("download_request", download::request_detail(task));
      r = download::transfer_file(task, event_dir, transfer_, context, reports[i]);
      if (r.record) {
        download::append_verified(event_dir, *r.record);
        export_log.write("download_complete", download::complete_detail(*r.record));
      }
    } catch (const std::exception& e) {
      r.record.reset();
      r.failure = download::Failure::kTransient;
      r.message = task.file + ": " + e.what();
      reports[i].failed(e.what());
    }
    if (r.record) {
      log().info("download_file", log()
                                      .fields()
                                      .add("log_id", log_id)
                                      .add("handler", name())
                                      .add("file", task.file)
                                      .add("bytes", r.record->bytes)
                                      .add("lines", r.record->lines)
                                      .add("duration_ms", r.record->duration_ms)
                                      .add("requests", r.requests)
                                      .add("resumed_from", r.resumed_from));
      std::lock_guard guard(mutex);
      records[i] = std::move(r.record);
      return;
    }
    try {
      export_log.write("download_error", download::error_detail(task, r.http_status, r.message,
                                                                r.body, r.retry_after));
    } catch (const std::exception& e) {
      r.message += std::string(" (and log.ndjson: ") + e.what() + ")";
    }
    log().warn("download_file_failed", log()
                                           .fields()
                                           .add("log_id", log_id)
                                           .add("handler", name())
                                           .add("file", task.file)
                                           .add("requests", r.requests)
                                           .add("error", r.message));
    std::lock_guard guard(mutex);
    failures.push_back(std::move(r));
  };
  download::for_each_parallel(todo, static_cast<std::size_t>(settings_.parallel), fetch);

  // The attachments of the DocumentReference files verified so far (this attempt or before).
  download::AttachmentOutcome attached;
  if (attachments_.enabled) {
    std::vector<FileRecord> verified_files;
    for (const auto& r : records) {
      if (r) verified_files.push_back(*r);
    }
    try {
      attached = download::run_attachments(verified_files, event_dir, event.request, attachments_,
                                           transfer_, context, export_log);
    } catch (const std::exception& e) {
      TransferResult r;
      r.message = std::string("attachments: ") + e.what();
      attached.failures.push_back(std::move(r));
    }
  }

  const auto duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  if (!failures.empty() || !attached.failures.empty()) {
    export_log.sync();
    const auto by_message = [](const TransferResult& a, const TransferResult& b) {
      return a.message < b.message;
    };
    std::sort(failures.begin(), failures.end(), by_message);
    std::sort(attached.failures.begin(), attached.failures.end(), by_message);
    std::string message;
    if (!failures.empty()) message = summary(failures, tasks.size());
    if (!attached.failures.empty()) {
      if (!message.empty()) message += "; ";
      message += summary(attached.failures, std::max(attached.tasks, attached.failures.size()),
                         "attachment");
      for (auto& r : attached.failures)
        failures.push_back(std::move(r));
    }
    const bool transient = std::any_of(
        failures.begin(), failures.end(),
        [](const TransferResult& r) { return r.failure == download::Failure::kTransient; });
    if (!transient) return Outcome::dead(message);
    std::optional<std::chrono::milliseconds> after;
    for (const auto& r : failures) {
      if (r.retry_after_delay)
        after = std::max(after.value_or(*r.retry_after_delay), *r.retry_after_delay);
    }
    return Outcome::retry(message, after);
  }

  std::vector<FileRecord> all;
  for (auto& r : records)
    all.push_back(std::move(*r));
  posix::write_file_atomically(
      event_dir, download::kManifestFile,
      download::manifest_json(event, delivery.event_key, all, attached.entries));
  export_log.write("export_complete",
                   download::export_complete_detail(all, duration_ms, attached.stored));
  export_log.sync();
  // The manifest now lists every verified file.
  if (::unlink((event_dir / download::kVerifiedFile).c_str()) == 0) posix::sync_dir(event_dir);
  std::uint64_t bytes = 0;
  std::uint64_t lines = 0;
  for (const auto& r : all) {
    bytes += r.bytes;
    lines += r.lines;
  }
  log().info("download_complete",
             log()
                 .fields()
                 .add("log_id", log_id)
                 .add("handler", name())
                 .add("files", static_cast<std::uint64_t>(all.size()))
                 .add("fetched", static_cast<std::uint64_t>(todo.size()))
                 .add("bytes", bytes)
                 .add("lines", lines)
                 .add("attachments", static_cast<std::uint64_t>(attached.stored))
                 .add("attachments_fetched", static_cast<std::uint64_t>(attached.fetched))
                 .add("duration_ms", static_cast<std::int64_t>(duration_ms))
                 .add("dir", event_dir.string()));
  return Outcome::done();
}

}  // namespace fbr::server
