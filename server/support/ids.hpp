#pragma once
// Identifiers and timestamps the server stamps on what it receives.
#include <string>

namespace fbr::server {

/// A random (version 4) UUID, lower case.
std::string new_uuid();

/// A time-ordered (version 7, RFC 9562) UUID, lower case: the Unix time in ms, then a counter
/// within the millisecond, then random bits. IDs made later on one thread sort after earlier
/// ones, so the journal's index of request IDs grows at its end instead of at a random page.
std::string new_uuid_v7();

/// Now, UTC, ISO 8601 with milliseconds: 2026-05-28T22:44:52.399Z.
std::string utc_now_iso();
/// That time (milliseconds since the Unix epoch), the same form.
std::string utc_iso(long long unix_ms);

}  // namespace fbr::server
