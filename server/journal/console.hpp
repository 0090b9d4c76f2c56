#pragma once
// The console's read side (the admin API, server/admin/): events page by page with filters, one
// event whole, the quarantine, counts by state, bulk replay. Both backends answer it (Backend
// derives from ConsoleStore); the NATS one with the approximations of its `events` command. Every
// call blocks (a query, a stream read): the admin server makes them on a thread of its own, never
// on an io thread, and each opens nothing the webhook path waits for.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/event.hpp"
#include "server/journal/journal.hpp"
#include "server/support/activity.hpp"

namespace fbr::server {

/// GET /api/events's filters; every empty field matches all.
struct EventQuery {
  std::string state;  ///< a delivery state: the event has a delivery in it (pending, running,
                      ///< done, failed, dead)
  std::optional<int> status;  ///< 200 or 202
  std::optional<bool> test;   ///< Meta.Test
  std::string handler;        ///< the event has a delivery for this handler
  std::string q;              ///< exact Log ID, event key, attempt ID or request ID
  std::string since, until;   ///< received_at bounds, ISO 8601 UTC, since <= t < until
  int limit = 50;             ///< 1..500 (the API clamps)
  std::string cursor;         ///< from the previous page's next_cursor; empty = newest
};

/// A delivery as the events table shows it (a chip).
struct DeliverySummary {
  std::string handler, state;
  int attempts = 0;
};

/// One row of the events table.
struct EventSummary {
  std::string key, log_id, received_at;
  int status = 0;
  std::optional<bool> test;
  std::int64_t output_count = 0;
  int attempts = 0;  ///< how many times Redox sent it (1 + duplicates)
  std::vector<DeliverySummary> deliveries;
};

struct EventPage {
  std::vector<EventSummary> events;  ///< newest first
  /// Opaque; pass as EventQuery::cursor for the next (older) page. Empty: no more. Keyset: an
  /// event arriving meanwhile never shifts a page (it is newer than the first one).
  std::string next_cursor;
};

/// One attempt of one delivery.
struct DeliveryAttempt {
  int attempt = 0;         ///< 1-based
  std::string started_at;  ///< ISO 8601 UTC
  std::int64_t duration_ms = 0;
  std::string outcome;  ///< done, retry, dead
  std::string error;    ///< bounded, no secret (the handler's message)
};

/// A delivery with its history.
struct DeliveryDetail {
  std::string handler, state, last_error, updated_at;
  int attempts = 0;
  std::int64_t next_attempt_at_ms = 0;   ///< 0: none scheduled
  std::vector<DeliveryAttempt> history;  ///< oldest first
};

/// GET /api/events/{key}: the event whole.
struct EventDetail {
  EventSummary summary;
  std::string body;                  ///< the raw body, exactly as received
  std::vector<AttemptRow> attempts;  ///< every time Redox sent it, oldest first
  std::vector<DeliveryDetail> deliveries;
};

/// A payload kept under invalid_payloads: quarantine.
struct QuarantineRow {
  std::string id;  ///< SQLite: the row id; NATS: the stream sequence
  std::string received_at, attempt_id, remote_addr, request_id;
  std::string errors_json;  ///< JSON array of {path, message}
  std::string body;         ///< filled by quarantined() only (lists leave it empty)
  std::uint64_t bytes = 0;  ///< the body's size
};

struct QuarantinePage {
  std::vector<QuarantineRow> items;  ///< newest first
  std::string next_cursor;
};

/// Counts for /api/status.
struct JournalCounts {
  std::int64_t events = 0;
  std::int64_t quarantined = 0;
  std::map<std::string, std::int64_t> deliveries;  ///< by state (pending, running, ...)
};

/// One readiness check for /api/status: journal_writable, free_space (SQLite), nats_connected,
/// stream_present (NATS).
struct HealthCheck {
  std::string name;
  bool ok = false;
  std::string detail;  ///< e.g. "12.3 GiB free", the error; no secret
};

class ConsoleStore {
 public:
  virtual ~ConsoleStore() = default;
  /// One page of events, newest first. Error message in `error`.
  virtual EventPage query_events(const EventQuery& query, std::string& error) = 0;
  /// The event with this key (an event with a Log ID has it as its key); nullopt with empty `error` when
  /// there is none.
  virtual std::optional<EventDetail> event_detail(const std::string& key, std::string& error) = 0;
  /// Puts every delivery in `state` (dead) back to pending: how many. Error message in `error`.
  virtual std::int64_t replay_state(const std::string& state, std::string& error) = 0;
  /// One page of quarantined payloads, newest first (limit 1..500).
  virtual QuarantinePage query_quarantine(const std::string& cursor, int limit,
                                          std::string& error) = 0;
  /// One quarantined payload with its body; nullopt with empty `error` when there is none.
  virtual std::optional<QuarantineRow> quarantined(const std::string& id, std::string& error) = 0;
  /// Counts by state. Error message in `error`.
  virtual JournalCounts counts(std::string& error) = 0;
  /// The backend's readiness checks (cheap: no query the webhook path would wait for).
  virtual std::vector<HealthCheck> health() = 0;
};

}  // namespace fbr::server

namespace fbr::server {

/// An events-table row as the API and the stream show it:
/// {"key","log_id","received_at","status","test","outputs","attempts","deliveries":[{"handler",
/// "state","attempts"}]} (test: true, false or null).
std::string to_json(const EventSummary& event);

/// {"events":[rows],"next_cursor":"..." or null}.
std::string to_json(const EventPage& page);

/// What the event's page shows beside the journal's record: the model's warnings on its body,
/// each handler's type (from the live config), and the files of its download handlers.
struct DetailExtras {
  std::vector<core::Diagnostic> warnings;
  std::map<std::string, std::string> types;  ///< handler -> type; absent: no longer configured
  std::map<std::string, std::vector<Activity::FileProgress>> files;  ///< download handlers only
};
/// {"event":row,"body","warnings","attempts","deliveries":[{"handler","type","state","attempts",
/// "last_error","updated_at","next_attempt_at","history",("files")}]}.
std::string to_json(const EventDetail& detail, const DetailExtras& extras);

/// A quarantine list item {"id","received_at","attempt_id","remote_addr","request_id","bytes",
/// "errors"}, with "body" when `with_body`.
std::string to_json(const QuarantineRow& row, bool with_body);
/// {"items":[...],"next_cursor":"..." or null}.
std::string to_json(const QuarantinePage& page);

/// [{"name","ok","detail"}].
std::string to_json(const std::vector<HealthCheck>& checks);

}  // namespace fbr::server
