#pragma once
// Identifiers and timestamps the server stamps on what it receives.
#include <string>

namespace fbr::server {

/// A random (version 4) UUID, lower case.
std::string new_uuid();

/// Now, UTC, ISO 8601 with milliseconds: 2026-05-28T22:44:52.399Z.
std::string utc_now_iso();
/// That time (milliseconds since the Unix epoch), the same form.
std::string utc_iso(long long unix_ms);

}  // namespace fbr::server
