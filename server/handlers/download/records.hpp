#pragma once
// What the download handler writes about an event next to its files: manifest.json (every file
// with its url, type, bytes, lines, sha256 and duration, plus the event's transactionTime and
// request), log.ndjson (download events in smart-on-fhir/bulk-data-client's log format), and
// .verified.ndjson, the fsync'd list of files already verified, which lets a retried or resumed
// delivery skip them. Each writer is here, with the pure function that renders its JSON.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.hpp"
#include "server/handlers/download/plan.hpp"
#include "server/support/posix.hpp"

namespace fbr::server::download {

/// A file fetched, verified and stored under its final name.
struct FileRecord {
  std::string list;  ///< output, error, deleted
  std::size_t index = 0;
  std::string type;
  std::string url;                 ///< without its query (FileTask::shown_url())
  std::string file;                ///< path under the event's folder
  std::uint64_t bytes = 0;         ///< stored bytes (gzip when store is gzip)
  std::uint64_t ndjson_bytes = 0;  ///< NDJSON bytes (uncompressed)
  std::uint64_t lines = 0;         ///< resources (non-blank lines)
  std::string sha256;              ///< hex SHA-256 of the stored bytes
  std::int64_t duration_ms = 0;

  /// Whether this record is of that task (same entry, same URL, same file name).
  [[nodiscard]] bool is_of(const FileTask& task) const;
};

/// An attachment fetched, verified and stored under its content-addressed name.
struct AttachmentRecord {
  std::string url;         ///< without its query
  std::string url_sha256;  ///< of the whole URL: what a later attempt matches it by
  std::string file;        ///< "attachments/<sha256><extension>"
  std::string content_type;
  std::uint64_t bytes = 0;
  std::string sha256;  ///< hex
  std::string sha1;    ///< base64 (FHIR's attachment.hash)
};

/// One manifest.json `attachments` entry: a resource that points at a stored attachment.
struct AttachmentEntry {
  std::string resource;  ///< "DocumentReference/<id>"
  AttachmentRecord record;
};

inline constexpr std::string_view kManifestFile = "manifest.json";
inline constexpr std::string_view kLogFile = "log.ndjson";
inline constexpr std::string_view kVerifiedFile = ".verified.ndjson";

/// One .verified.ndjson line (without "\n").
std::string verified_line(const FileRecord& record);

/// Records from the folder's manifest.json and .verified.ndjson (a torn last line, left by a
/// crash, is ignored). Missing files: none.
std::vector<FileRecord> read_verified(const std::filesystem::path& event_dir);

/// One .verified.ndjson line of an attachment (without "\n"): {"attachment": {...}}.
std::string verified_attachment_line(const AttachmentRecord& record);
/// Attachment records from the folder's manifest.json and .verified.ndjson.
std::vector<AttachmentRecord> read_verified_attachments(const std::filesystem::path& event_dir);
/// Appends an attachment record to .verified.ndjson and fsyncs it; throws on I/O errors.
void append_verified_attachment(const std::filesystem::path& event_dir,
                                const AttachmentRecord& record);

/// Verified records looked up by the task they belong to: a retry of an event with n files makes
/// n lookups, not n × n comparisons.
class VerifiedRecords {
 public:
  explicit VerifiedRecords(std::vector<FileRecord> records);
  /// The records of that task (FileRecord::is_of), in the order read.
  [[nodiscard]] std::vector<const FileRecord*> of(const FileTask& task) const;
  [[nodiscard]] std::size_t size() const { return size_; }

 private:
  // By (list, index): one entry of the event's manifest; is_of checks the rest.
  std::map<std::pair<std::string, std::size_t>, std::vector<FileRecord>> by_entry_;
  std::size_t size_ = 0;
};

/// Appends a record to .verified.ndjson and fsyncs it; throws on I/O errors.
void append_verified(const std::filesystem::path& event_dir, const FileRecord& record);

/// manifest.json's text: the event's transactionTime, request, requiresAccessToken, Log ID and
/// key, then output/error/deleted arrays of records (each in the order of its manifest array),
/// then `attachments` (resourceId, url, file, contentType, bytes, sha256, sha1, urlSha256).
std::string manifest_json(const core::Event& event, std::string_view event_key,
                          const std::vector<FileRecord>& records,
                          const std::vector<AttachmentEntry>& attachments = {});

/// "YYYY-MM-DDTHH:mm:ss+00:00": winston's `isoDateTime` timestamp (bulk-data-client), in UTC.
std::string iso_date_time(std::chrono::system_clock::time_point when);

/// One log.ndjson line (without "\n"): {"exportId", "timestamp", "eventId", "eventDetail"}.
std::string log_line(std::string_view export_id, std::string_view timestamp,
                     std::string_view event_id, std::string_view detail_json);

/// eventDetail of download_request: {"fileUrl", "itemType", "resourceType"}.
std::string request_detail(const FileTask& task);
/// eventDetail of download_complete: {"fileUrl", "fileSize", "resourceCount"} (NDJSON bytes).
std::string complete_detail(const FileRecord& record);
/// eventDetail of download_error: {"body", "code", "fileUrl", "message", "responseHeaders"}.
std::string error_detail(const FileTask& task, std::optional<long> code, std::string_view message,
                         std::string_view body, std::string_view retry_after);
/// The same three for an attachment: itemType "attachment", resourceType "DocumentReference";
/// download_complete's fileSize is its bytes and resourceCount the resources pointing at it.
std::string attachment_request_detail(std::string_view shown_url);
std::string attachment_complete_detail(const AttachmentRecord& record, std::uint64_t uses);
std::string attachment_error_detail(std::string_view shown_url, std::optional<long> code,
                                    std::string_view message, std::string_view body,
                                    std::string_view retry_after);
/// eventDetail of export_complete: {"files", "resources", "bytes", "attachments", "duration"}.
/// `attachments`: the attachments stored (distinct files).
std::string export_complete_detail(const std::vector<FileRecord>& records, std::int64_t duration_ms,
                                   std::uint64_t attachments = 0);

/// log.ndjson of one event, appended to by the delivery's transfer threads.
class ExportLog {
 public:
  /// Opens (creates, 0600) the file for appending; throws.
  ExportLog(const std::filesystem::path& file, std::string export_id);
  /// Appends one line (one write, so lines of several threads never mix); throws.
  void write(std::string_view event_id, std::string_view detail_json);
  /// fsync; throws.
  void sync();

 private:
  std::string path_;
  std::string export_id_;
  std::mutex mutex_;
  posix::Fd fd_;
};

}  // namespace fbr::server::download
