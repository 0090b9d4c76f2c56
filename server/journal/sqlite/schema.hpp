#pragma once
// The journal file's format: its tables, and the upgrade of a journal an older version made.
// PRAGMA user_version is the format: 0 for a journal of format 1 (or a new, empty file), then
// kFormat. Every opener that writes (the service, the CLI) brings a file up to kFormat first.
#include <optional>
#include <string>

#include "server/journal/sqlite/database.hpp"

namespace fbr::server::sqlite {

/// Format 2: an event's first attempt lives in its events row (attempt_id, received_at,
/// remote_addr, request_id); `attempts` holds the repeated ones only (duplicate = 1). A new
/// event is then one row in one table instead of two, and no index on log_id (it is the key).
inline constexpr int kFormat = 2;

/// Creates the tables of a new journal or upgrades one of an older format, in one transaction
/// (a crash leaves the old format whole). Returns an error message, or nullopt.
std::optional<std::string> ensure_schema(Database& db);

/// The file's format (PRAGMA user_version; 0 when unreadable).
int format_of(Database& db);

}  // namespace fbr::server::sqlite
