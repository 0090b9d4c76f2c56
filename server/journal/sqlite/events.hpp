#pragma once
// The CLI's `events` and `replay` when the journal is SQLite: queries on the journal file through
// a connection of their own, so they work while the server runs.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "server/journal/journal.hpp"

namespace fbr::server {

/// Lists journaled events, newest first; empty `log_id` = all. Error message in `error`.
std::vector<EventRow> list_events(const std::filesystem::path& data_dir, const std::string& log_id,
                                  int limit, std::string& error);

/// Re-queues the deliveries of the event with this Log ID (or key): every existing one, or only
/// `handler`'s (created when missing, if `handler` is in `configured`). Works while the server
/// runs: its dispatcher picks pending rows up. Returns the handlers re-queued; error message in
/// `error`.
std::vector<std::string> replay_deliveries(const std::filesystem::path& data_dir,
                                           const std::string& log_id, const std::string& handler,
                                           const std::vector<std::string>& configured,
                                           std::string& error);

/// Puts every delivery in `state` ("dead" or "failed"; anything else is an error) back to pending
/// with 0 attempts, in one transaction. Returns how many; error message in `error`.
std::int64_t replay_state(const std::filesystem::path& data_dir, const std::string& state,
                          std::string& error);

}  // namespace fbr::server
