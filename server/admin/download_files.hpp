#pragma once
// A download handler's files as an event's page shows them: what its records on disk say
// (manifest.json and .verified.ndjson: verified, each file once), then what this process's
// transfers report of the others (in progress, or failed).
#include <filesystem>
#include <string>
#include <vector>

#include "server/support/activity.hpp"

namespace fbr::server::admin {

/// `event_dir`: the handler's dir / file_stem(key); `live`: activity().progress_of(key).
std::vector<Activity::FileProgress> download_files(const std::string& handler,
                                                   const std::filesystem::path& event_dir,
                                                   const std::vector<Activity::FileProgress>& live);

}  // namespace fbr::server::admin
