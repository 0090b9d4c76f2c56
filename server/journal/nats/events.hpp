#pragma once
// The CLI's `events` and `replay` when the journal is NATS JetStream (journal.backend "nats"):
// read the journal stream from the outside, like any other client (see
// server/journal/nats/stream.hpp for the subjects, headers and consumer names).
#include <string>
#include <vector>

#include "config/config.hpp"
#include "server/journal/journal.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {

/// Events of the journal stream, newest first; empty `log_id` = all, else those whose Log ID or
/// event key is `log_id`. Each has one attempt (the one JetStream stored: a duplicate is not
/// stored) and a delivery per handler in its Fbr-Handlers: `dead` when a dead letter exists for
/// it, `done` when the handler's durable consumer's ack floor has reached it, else `pending`.
/// Error message in `error` (which server, which stream, JetStream's error).
std::vector<EventRow> list_nats_events(const config::Config& config, const std::string& log_id,
                                       int limit, std::string& error);

/// Publishes the newest event with this Log ID (or key) again, to <subject>.replay.<handler>,
/// for each handler in its Fbr-Handlers that is still configured, or only `handler` (which must
/// be configured). Returns the handlers it was published for; error message in `error`.
std::vector<std::string> replay_nats_event(const config::Config& config, const std::string& log_id,
                                           const std::string& handler, std::string& error);
/// The same over an open connection (the console's, in a running service).
std::vector<std::string> replay_nats_event(nats::Connection& connection,
                                           const config::Config& config, const std::string& log_id,
                                           const std::string& handler, std::string& error);

}  // namespace fbr::server
