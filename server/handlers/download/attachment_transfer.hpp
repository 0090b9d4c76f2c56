#pragma once
// The attachments of a delivery's DocumentReference files (attachments.hpp plans them), fetched
// once the files are verified: one request per distinct URL (with `parallel` at once), held to
// the same egress policy, token rules, redirects, timeouts and tries as a file (transfer.hpp),
// the bytes hashed (SHA-256 and SHA-1) as they arrive into a hidden part file under
// attachments/, which is fsync'd and renamed to its content-addressed name. Each resource that
// points at the URL is checked against it (attachment.size, attachment.hash). Verified ones are
// appended to .verified.ndjson, so a retried or restarted delivery fetches none of them again.
// No Range resume: an attachment cut short is fetched again whole.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "server/handlers/download/attachments.hpp"
#include "server/handlers/download/records.hpp"
#include "server/handlers/download/transfer.hpp"

namespace fbr::server::download {

/// The handler's `attachments` settings.
struct AttachmentSettings {
  bool enabled = false;
  std::vector<std::string> types;  ///< empty: every content type
  std::uint64_t max_bytes = 1ULL << 30;
  std::uint64_t max_count = 10000;  ///< (resource, URL) pairs of one delivery, at most
  std::size_t parallel = 4;
};

/// The attachments of one delivery.
struct AttachmentOutcome {
  std::vector<AttachmentEntry> entries;  ///< one per (resource, URL), for manifest.json
  std::size_t stored = 0;                ///< distinct files
  std::size_t tasks = 0;                 ///< distinct URLs (those that cannot be resolved too)
  std::size_t fetched = 0;               ///< URLs fetched by this attempt (not already verified)
  std::vector<TransferResult> failures;  ///< message: "<resource> (<url>): why"
};

/// One attachment URL fetched, stored under `event_dir`/attachments/ and returned as its record
/// (or the failure). Never throws for HTTP, policy or limit problems; may throw for local I/O.
TransferResult fetch_attachment(const AttachmentTask& task, const std::filesystem::path& event_dir,
                                const TransferSettings& settings, const EventContext& event,
                                std::uint64_t max_bytes, std::optional<AttachmentRecord>& record);

/// Reads the attachments of the verified DocumentReference files among `files` (stored under
/// `event_dir`), fetches those not verified yet, checks every use, and logs each in `log`.
AttachmentOutcome run_attachments(const std::vector<FileRecord>& files,
                                  const std::filesystem::path& event_dir,
                                  const std::optional<std::string>& request,
                                  const AttachmentSettings& attachments,
                                  const TransferSettings& settings, const EventContext& event,
                                  ExportLog& log);

}  // namespace fbr::server::download
