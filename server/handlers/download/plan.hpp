#pragma once
// Which files a complete (status 200) event asks the download handler for, and where each lands:
// output[] files at the top of the event's folder as <Type>.<n>.ndjson (n counts the files of
// one type, from 1), error[] files under error/ and deleted[] files under deleted/ (as
// smart-on-fhir/bulk-data-client does), so that no list can overwrite another's file.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.hpp"
#include "core/url.hpp"

namespace fbr::server::download {

/// One file to fetch.
struct FileTask {
  std::string list;   ///< "output", "error" or "deleted": the manifest array it came from
  std::size_t index;  ///< its position in that array
  std::string type;   ///< the entry's `type`
  std::string url;
  std::optional<std::int64_t> count;  ///< the entry's `count`, checked when given
  std::string expected_type;  ///< resourceType of every line (error files: OperationOutcome)
  std::string file;  ///< path under the event's folder, e.g. "error/OperationOutcome.1.ndjson"
  /// `url` without its query (presigned URLs carry credentials there): what logs, log.ndjson,
  /// manifest.json and messages show.
  [[nodiscard]] std::string shown_url() const { return core::redacted_url(url); }
};

/// Every file of the event, output[] then error[] then deleted[]; `gzip`: names end in .ndjson.gz.
std::vector<FileTask> plan_files(const core::Event& event, bool gzip);

/// A resource type as a file-name part: letters and digits kept, anything else '_', at most 64
/// characters; "unknown" when nothing is left.
std::string safe_type_name(std::string_view type);

}  // namespace fbr::server::download
