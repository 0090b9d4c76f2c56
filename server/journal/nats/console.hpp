#pragma once
// The console's read side (server/journal/console.hpp) on the NATS journal: everything is read
// from the stream (nats/reader.hpp) over one connection of the console's own, opened at the first
// call and kept (libnats reconnects it by itself), never the journal's or the dispatcher's. The
// approximations are those of the `events` command (nats/states.hpp), with the attempts this
// process ran (nats/history.hpp):
// - an event has the one attempt JetStream stored (a duplicate is not stored), so `q` finds the
//   first attempt's ID and request ID only;
// - a page reads at most kScanBudget sequences of the stream; then it ends early, possibly short
//   or empty, with a cursor that goes on below what it read;
// - counts: events and quarantined are the messages on their subjects, dead the dead letters,
//   pending the configured handlers' consumers' undelivered messages (every event counts for every
//   handler's events consumer, listed or not), running those running here, failed the consumers'
//   delivered-but-unacknowledged messages less those running here; done is not counted.
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "server/journal/console.hpp"
#include "server/journal/nats/history.hpp"
#include "server/journal/nats/reader.hpp"
#include "server/journal/nats/states.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {

class NatsConsole {
 public:
  /// Sequences of the stream one page may read before it returns with a cursor.
  static constexpr std::uint64_t kScanBudget = 5000;

  /// `config` must outlive it; `history` is what this process's dispatcher ran.
  NatsConsole(const config::Config& config, std::shared_ptr<const NatsHistory> history);

  EventPage query_events(const EventQuery& query, std::string& error);
  std::optional<EventDetail> event_detail(const std::string& key, std::string& error);
  std::int64_t replay_state(const std::string& state, std::string& error);
  QuarantinePage query_quarantine(const std::string& cursor, int limit, std::string& error);
  std::optional<QuarantineRow> quarantined(const std::string& id, std::string& error);
  JournalCounts counts(std::string& error);
  /// Backend::replay in a running service: replay_nats_event over this connection.
  std::vector<std::string> replay_event(const std::string& log_id, const std::string& handler,
                                        std::string& error);
  /// nats_connected and stream_present, on the console's connection (only the first call waits,
  /// up to 2 s, for it to connect).
  std::vector<HealthCheck> health();

  /// A page cursor: opaque text for a stream sequence (base64url of its digits).
  static std::string cursor_for(std::uint64_t sequence);
  /// The sequence of a cursor (0 for ""); nullopt when it is not one of ours.
  static std::optional<std::uint64_t> sequence_of(const std::string& cursor);

 private:
  /// The connection, connected; nullptr and `error` when NATS cannot be reached now.
  nats::Connection* connection(std::string& error);
  [[nodiscard]] std::string where_of(nats::Connection& c) const;
  /// The delivery states now (the dead-letter index brought up to date first).
  std::optional<DeliveryStates> states(nats::Connection& c, std::string& error);
  EventSummary summarize(const nats_reader::Header& h, DeliveryStates& states) const;

  const config::Config& config_;
  const config::NatsJournal& nats_;
  std::shared_ptr<const NatsHistory> history_;
  std::mutex mutex_;  // guards connection_ (the connection itself is thread-safe)
  std::unique_ptr<nats::Connection> connection_;
  std::mutex dead_mutex_;  // guards dead_
  DeadLetterIndex dead_;   // kept between calls: a page reads only the dead letters added since
};

}  // namespace fbr::server
