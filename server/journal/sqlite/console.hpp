#pragma once
// The console's read side (server/journal/console.hpp) on the SQLite journal: one read-only
// connection of its own, opened at the first query and again after an error, shared by the admin
// server's threads under a mutex. Each answer reads one snapshot (a read transaction), so an event,
// its attempts and its deliveries agree with each other; it never waits for the writer (WAL).
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "server/journal/console.hpp"
#include "server/journal/sqlite/database.hpp"

namespace fbr::server {

class SqliteConsole {
 public:
  explicit SqliteConsole(std::filesystem::path data_dir) : data_dir_(std::move(data_dir)) {}

  EventPage query_events(const EventQuery& query, std::string& error);
  std::optional<EventDetail> event_detail(const std::string& key, std::string& error);
  QuarantinePage query_quarantine(const std::string& cursor, int limit, std::string& error);
  std::optional<QuarantineRow> quarantined(const std::string& id, std::string& error);
  JournalCounts counts(std::string& error);

 private:
  /// Runs `read` in a read transaction on the connection (opened when needed) with the mutex
  /// held. An error in `error` closes the connection: the next call opens it again.
  template <typename Read>
  void with_snapshot(std::string& error, Read&& read);

  std::filesystem::path data_dir_;
  std::mutex mutex_;
  sqlite::Database db_;
};

/// The opaque keyset cursor for a row id (base64url of its decimal digits), and back: nullopt
/// with `error` ("cursor: ...") when `cursor` is not one that encode_cursor made.
std::string encode_cursor(std::int64_t rowid);
std::optional<std::int64_t> decode_cursor(std::string_view cursor, std::string& error);

/// `text` (ISO 8601 UTC: a date, or a date and time with optional fraction, `Z` or none) in the
/// journal's form, 2026-12-02T20:14:03.512Z, so that text order is time order; nullopt when it is
/// not one.
std::optional<std::string> normalized_utc(std::string_view text);

}  // namespace fbr::server
