#include "server/journal/sqlite/console.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <limits>

#include "server/journal/sqlite/journal.hpp"
#include "server/support/jose.hpp"

namespace fbr::server {
namespace {

constexpr std::array<std::string_view, 5> kStates = {"pending", "running", "done", "failed",
                                                     "dead"};
constexpr int kMaxLimit = 500;
// A state with fewer deliveries than this, or a time range with fewer events, drives the events
// query from its index instead of a newest-first scan of the events: the dead-letter view and a
// past hour stay fast in a journal of millions, and common matches (done) stop the scan soon.
constexpr std::int64_t kNarrow = 10000;

constexpr std::string_view kEventColumns =
    "SELECT e.rowid, e.key, e.log_id, e.received_at, e.status, e.test, e.output_count, "
    "1 + (SELECT COUNT(*) FROM attempts a WHERE a.event_key = e.key)";

/// Decimal digits only, 1..18 of them (fits an int64 with room): a row id.
std::optional<std::int64_t> row_id(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0) return std::nullopt;
  if (text.front() == '0') return std::nullopt;  // one spelling per number
  return value;
}

/// Reads an event row of kEventColumns (+ `body` at column 8 when asked).
EventSummary summary_of(const sqlite::Statement& s) {
  EventSummary e;
  e.key = s.text(1);
  e.log_id = s.text(2);
  e.received_at = s.text(3);
  e.status = static_cast<int>(s.integer(4));
  if (!s.is_null(5)) e.test = s.integer(5) != 0;
  e.output_count = s.integer(6);
  e.attempts = static_cast<int>(s.integer(7));
  return e;
}

/// Prepares `sql`; on failure sets `error` (and returns false).
bool prepare(sqlite::Database& db, sqlite::Statement& s, std::string_view sql, std::string& error) {
  if (auto e = s.prepare(db, sql)) {
    error = "journal: " + *e;
    return false;
  }
  return true;
}

/// Steps to the end (or an error, which goes to `error`), calling `row` for each row.
template <typename Row>
void each_row(sqlite::Database& db, sqlite::Statement& s, std::string& error, Row&& row) {
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    row();
  if (rc != SQLITE_DONE && error.empty()) error = "journal: " + db.last_error();
  s.reset();
}

/// Fills each event's delivery chips (handler, state, attempts).
void add_chips(sqlite::Database& db, std::vector<EventSummary>& events, std::string& error) {
  sqlite::Statement chips;
  if (!prepare(db, chips,
               "SELECT handler, state, attempts FROM deliveries WHERE event_key = ? "
               "ORDER BY handler",
               error)) {
    return;
  }
  for (auto& event : events) {
    chips.bind(1, event.key);
    each_row(db, chips, error, [&] {
      event.deliveries.push_back(
          {chips.text(0), chips.text(1), static_cast<int>(chips.integer(2))});
    });
  }
}

/// Where the events query starts from: every plan yields the page in row id order (newest first),
/// only the rows it reads to find it differ.
enum class Driver {
  kScan,   ///< the events newest first, stopping after one page: no filter, or common matches
  kKeys,   ///< the few events q names (its Log ID, key, attempt or request ID; indexed)
  kState,  ///< the deliveries in a rare state (the state index)
  kTime,   ///< the events in a narrow since/until range (the received_at index)
};

/// The time bounds as SQL on `column` (?7 since, ?8 until), "" when there are none.
std::string time_terms(const EventQuery& query, std::string_view column) {
  std::string terms;
  if (!query.since.empty()) terms += " AND " + std::string(column) + " >= ?7";
  if (!query.until.empty()) terms += " AND " + std::string(column) + " < ?8";
  return terms;
}

/// The events query for `query` (bound as ?1 before-rowid, ?2 status, ?3 test, ?4 state,
/// ?5 handler, ?6 q, ?7 since, ?8 until, ?9 limit, ?10 the oldest row id to look at). The inner
/// query finds the page's row ids, the outer one reads their columns: a plan that sorts its
/// candidates sorts row ids only.
std::string events_sql(const EventQuery& query, Driver driver) {
  std::string inner = "SELECT e.rowid AS r FROM ";
  switch (driver) {
    case Driver::kKeys:
      inner +=
          "(SELECT ?6 AS k UNION SELECT key FROM events WHERE attempt_id = ?6 "
          "UNION SELECT key FROM events WHERE request_id = ?6 "
          "UNION SELECT event_key FROM attempts WHERE attempt_id = ?6 "
          "UNION SELECT event_key FROM attempts WHERE request_id = ?6) s "
          "CROSS JOIN events e ON e.key = s.k";
      break;
    case Driver::kState:
      inner +=
          "(SELECT DISTINCT event_key AS k FROM deliveries WHERE state = ?4) s "
          "CROSS JOIN events e ON e.key = s.k";
      break;
    case Driver::kTime:
      inner += "events e INDEXED BY events_received_at";
      break;
    case Driver::kScan:
      inner += "events e NOT INDEXED";
      break;
  }
  inner += " WHERE e.rowid < ?1 AND e.rowid >= ?10";
  if (query.status) inner += " AND e.status = ?2";
  if (query.test) inner += " AND IFNULL(e.test, 0) = ?3";  // no Meta.Test counts as false
  // `+d.state`: look the event's deliveries up by its key (the primary key), never by scanning
  // the state index for this event.
  if (!query.state.empty() && driver != Driver::kState) {
    inner +=
        " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_key = e.key "
        "AND +d.state = ?4)";
  }
  if (!query.handler.empty()) {
    inner +=
        " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_key = e.key AND "
        "d.handler = ?5)";
  }
  inner += time_terms(query, "e.received_at");
  inner += " ORDER BY e.rowid DESC LIMIT ?9";
  return std::string(kEventColumns) + " FROM (" + inner +
         ") page CROSS JOIN events e ON e.rowid = page.r ORDER BY e.rowid DESC";
}

/// At most kNarrow: how many rows `sql` (a SELECT 1 ... with ?1 and ?2 bound as given) finds, an
/// index range stopped early.
std::int64_t count_up_to(sqlite::Database& db, const std::string& sql, const EventQuery& query,
                         std::string& error) {
  sqlite::Statement s;
  if (!prepare(db, s, "SELECT COUNT(*) FROM (" + sql + " LIMIT " + std::to_string(kNarrow) + ")",
               error)) {
    return kNarrow;
  }
  s.bind(4, query.state).bind(7, query.since).bind(8, query.until);
  std::int64_t n = kNarrow;
  each_row(db, s, error, [&] { n = s.integer(0); });
  return n;
}

/// How the events query finds its page.
struct Plan {
  Driver driver = Driver::kScan;
  /// A scan looks at row ids in [from, below) only: a wide time range's own rows (one lower and
  /// one upper bound: SQLite starts a range at one of each).
  std::int64_t from = 0;
  std::int64_t below = std::numeric_limits<std::int64_t>::max();
};

/// The scan's row id bounds for a wide time range: past its newest row when many events are
/// newer than `until` (else the scan would read them all first), down to its oldest when other
/// filters could leave the page short and many events are older than `since` (else the scan
/// would read them all after). Each bound costs one pass over the range's index entries.
void bound_scan(sqlite::Database& db, const EventQuery& query, Plan& scan, std::string& error) {
  const std::string by_time = "SELECT 1 FROM events INDEXED BY events_received_at WHERE 1";
  const bool newer = !query.until.empty() &&
                     count_up_to(db, by_time + " AND received_at >= ?8", query, error) == kNarrow;
  const bool filtered =
      query.status || query.test || !query.state.empty() || !query.handler.empty();
  const bool older = filtered && !query.since.empty() &&
                     count_up_to(db, by_time + " AND received_at < ?7", query, error) == kNarrow;
  if (!newer && !older) return;
  sqlite::Statement bounds;
  if (!prepare(db, bounds,
               "SELECT MIN(rowid), MAX(rowid) FROM events INDEXED BY events_received_at WHERE 1" +
                   time_terms(query, "received_at"),
               error)) {
    return;
  }
  bounds.bind(7, query.since).bind(8, query.until);
  each_row(db, bounds, error, [&] {
    if (bounds.is_null(0)) return;
    if (older) scan.from = bounds.integer(0);
    if (newer) scan.below = bounds.integer(1) + 1;
  });
}

/// The cheapest way to find the page: q's few keys, else the narrower of a rare state and a
/// narrow time range, else the scan (whose matches are common, so it stops soon), bounded to a
/// wide time range's rows.
Plan plan(sqlite::Database& db, const EventQuery& query, std::string& error) {
  if (!query.q.empty()) return {Driver::kKeys};
  std::int64_t in_state = kNarrow;
  std::int64_t in_time = kNarrow;
  const std::string range = time_terms(query, "received_at");
  if (!query.state.empty()) {
    in_state = count_up_to(db, "SELECT 1 FROM deliveries WHERE state = ?4", query, error);
  }
  if (!range.empty()) {
    in_time = count_up_to(db, "SELECT 1 FROM events INDEXED BY events_received_at WHERE 1" + range,
                          query, error);
  }
  if (in_state < kNarrow && in_state <= in_time) return {Driver::kState};
  if (in_time < kNarrow) return {Driver::kTime};
  Plan scan;
  if (!range.empty()) bound_scan(db, query, scan, error);
  return scan;
}

/// Parses `n` digits of `text` at `at` into `out`, within [lo, hi].
bool digits(std::string_view text, std::size_t at, std::size_t n, int lo, int hi, int& out) {
  if (at + n > text.size()) return false;
  out = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    out = out * 10 + (text[i] - '0');
  }
  return out >= lo && out <= hi;
}

/// A page starts below this row id: the cursor's, or past the newest for the first page. False
/// with `error` for a cursor we did not give.
bool below_cursor(const std::string& cursor, std::int64_t& before, std::string& error) {
  before = std::numeric_limits<std::int64_t>::max();
  if (cursor.empty()) return true;
  auto rowid = decode_cursor(cursor, error);
  if (rowid) before = *rowid;
  return rowid.has_value();
}

/// Reads the query's filters into their journal forms; false with `error` naming the parameter.
bool checked(EventQuery& query, std::string& error) {
  if (!query.state.empty() &&
      std::find(kStates.begin(), kStates.end(), query.state) == kStates.end()) {
    error = "state: must be one of pending, running, done, failed, dead";
    return false;
  }
  for (auto [name, value] : {std::pair{"since", &query.since}, std::pair{"until", &query.until}}) {
    if (value->empty()) continue;
    auto normal = normalized_utc(*value);
    if (!normal) {
      error = std::string(name) + ": must be ISO 8601 UTC, e.g. 2026-12-02T20:14:03Z";
      return false;
    }
    *value = std::move(*normal);
  }
  query.limit = std::clamp(query.limit, 1, kMaxLimit);
  return true;
}

}  // namespace

std::string encode_cursor(std::int64_t rowid) {
  return jose::base64url_encode(std::to_string(rowid));
}

std::optional<std::int64_t> decode_cursor(std::string_view cursor, std::string& error) {
  std::optional<std::int64_t> rowid;
  // Short, and only the spelling encode_cursor makes (no padding, no other bits).
  if (cursor.size() <= 32) {
    if (auto text = jose::base64url_decode(cursor)) {
      rowid = row_id(*text);
      if (rowid && encode_cursor(*rowid) != cursor) rowid.reset();
    }
  }
  if (!rowid) error = "cursor: not one this server gave (pass next_cursor as it came)";
  return rowid;
}

std::optional<std::string> normalized_utc(std::string_view text) {
  // YYYY-MM-DD[THH:MM[:SS[.fff…]]][Z]
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(text, 0, 4, 0, 9999, year) || text.size() < 10 || text[4] != '-' ||
      !digits(text, 5, 2, 1, 12, month) || text[7] != '-' || !digits(text, 8, 2, 1, 31, day)) {
    return std::nullopt;
  }
  std::size_t at = 10;
  std::string fraction = "000";
  if (at < text.size() && text[at] == 'T') {
    if (!digits(text, at + 1, 2, 0, 23, hour) || text.size() < at + 6 || text[at + 3] != ':' ||
        !digits(text, at + 4, 2, 0, 59, minute)) {
      return std::nullopt;
    }
    at += 6;
    if (at < text.size() && text[at] == ':') {
      if (!digits(text, at + 1, 2, 0, 60, second)) return std::nullopt;
      at += 3;
      if (at < text.size() && text[at] == '.') {
        std::size_t n = 0;
        for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, ++n) {
          if (n < 3) fraction[n] = text[at];
        }
        if (n == 0) return std::nullopt;
      }
    }
  }
  if (at < text.size() && text[at] == 'Z') ++at;
  if (at != text.size()) return std::nullopt;
  char out[32];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%sZ", year, month, day, hour,
                minute, second, fraction.c_str());
  return std::string(out);
}

template <typename Read>
void SqliteConsole::with_snapshot(std::string& error, Read&& read) {
  std::lock_guard lock(mutex_);
  if (!db_.is_open()) {
    const auto file = SqliteJournal::file_in(data_dir_);
    if (!std::filesystem::exists(file)) {
      error = "journal: no journal at " + file.string();
      return;
    }
    if (auto e = db_.open(file.string(), true)) {
      error = "journal: cannot open " + file.string() + ": " + *e;
      return;
    }
    sqlite3_busy_timeout(db_.handle(), 5000);
  }
  if (auto e = db_.exec("BEGIN")) {
    error = "journal: " + *e;
  } else {
    read();
    (void)db_.exec(error.empty() ? "COMMIT" : "ROLLBACK");
  }
  // A connection that failed once (a file replaced, an I/O error) is opened afresh next time.
  if (!error.empty()) db_.close();
}

EventPage SqliteConsole::query_events(const EventQuery& request, std::string& error) {
  EventPage page;
  EventQuery query = request;
  std::int64_t before = 0;
  if (!below_cursor(query.cursor, before, error)) return page;
  if (!checked(query, error)) return page;
  with_snapshot(error, [&] {
    const Plan how = plan(db_, query, error);
    sqlite::Statement events;
    if (!error.empty() || !prepare(db_, events, events_sql(query, how.driver), error)) return;
    // Every value is a bound parameter, never SQL text; unused ones bind nothing.
    events.bind(1, std::min(before, how.below))
        .bind(2, std::int64_t{query.status.value_or(0)})
        .bind(3, std::int64_t{query.test.value_or(false) ? 1 : 0})
        .bind(4, query.state)
        .bind(5, query.handler)
        .bind(6, query.q)
        .bind(7, query.since)
        .bind(8, query.until)
        .bind(9, std::int64_t{query.limit} + 1)  // one more: is there a next page?
        .bind(10, how.from);
    std::int64_t last = 0;
    each_row(db_, events, error, [&] {
      if (static_cast<int>(page.events.size()) == query.limit) {
        page.next_cursor = encode_cursor(last);
        return;
      }
      last = events.integer(0);
      page.events.push_back(summary_of(events));
    });
    if (error.empty()) add_chips(db_, page.events, error);
  });
  if (!error.empty()) page = {};
  return page;
}

std::optional<EventDetail> SqliteConsole::event_detail(const std::string& key, std::string& error) {
  std::optional<EventDetail> detail;
  with_snapshot(error, [&] {
    sqlite::Statement event, attempts, deliveries, history;
    // The key (an event's Log ID is its key).
    if (!prepare(db_, event, std::string(kEventColumns) + ", e.body FROM events e WHERE e.key = ?1",
                 error) ||
        !prepare(db_, attempts,
                 "SELECT attempt_id, received_at, remote_addr, request_id, duplicate "
                 "FROM event_attempts WHERE event_key = ? ORDER BY seq",
                 error) ||
        !prepare(db_, deliveries,
                 "SELECT handler, state, last_error, updated_at, attempts, next_attempt_at "
                 "FROM deliveries WHERE event_key = ? ORDER BY handler",
                 error) ||
        !prepare(db_, history,
                 "SELECT attempt, started_at, duration_ms, outcome, error FROM delivery_attempts "
                 "WHERE event_key = ? AND handler = ? ORDER BY id",
                 error)) {
      return;
    }
    event.bind(1, key);
    each_row(db_, event, error, [&] {
      detail.emplace();
      detail->summary = summary_of(event);
      detail->body = event.text(8);
    });
    if (!detail || !error.empty()) return;
    attempts.bind(1, detail->summary.key);
    each_row(db_, attempts, error, [&] {
      detail->attempts.push_back({attempts.text(0), attempts.text(1), attempts.text(2),
                                  attempts.text(3), attempts.integer(4) != 0});
    });
    deliveries.bind(1, detail->summary.key);
    each_row(db_, deliveries, error, [&] {
      DeliveryDetail d{deliveries.text(0),
                       deliveries.text(1),
                       deliveries.text(2),
                       deliveries.text(3),
                       static_cast<int>(deliveries.integer(4)),
                       deliveries.integer(5),
                       {}};
      detail->summary.deliveries.push_back({d.handler, d.state, d.attempts});
      detail->deliveries.push_back(std::move(d));
    });
    for (auto& d : detail->deliveries) {
      history.bind(1, detail->summary.key).bind(2, d.handler);
      each_row(db_, history, error, [&] {
        d.history.push_back({static_cast<int>(history.integer(0)), history.text(1),
                             history.integer(2), history.text(3), history.text(4)});
      });
    }
  });
  if (!error.empty()) detail.reset();
  return detail;
}

QuarantinePage SqliteConsole::query_quarantine(const std::string& cursor, int limit,
                                               std::string& error) {
  QuarantinePage page;
  std::int64_t before = 0;
  if (!below_cursor(cursor, before, error)) return page;
  limit = std::clamp(limit, 1, kMaxLimit);
  with_snapshot(error, [&] {
    sqlite::Statement items;
    if (!prepare(db_, items,
                 "SELECT id, received_at, attempt_id, remote_addr, request_id, errors, "
                 "length(body) FROM quarantine WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                 error)) {
      return;
    }
    items.bind(1, before).bind(2, std::int64_t{limit} + 1);
    std::int64_t last = 0;
    each_row(db_, items, error, [&] {
      if (static_cast<int>(page.items.size()) == limit) {
        page.next_cursor = encode_cursor(last);
        return;
      }
      last = items.integer(0);
      page.items.push_back({std::to_string(last), items.text(1), items.text(2), items.text(3),
                            items.text(4), items.text(5), std::string(),
                            static_cast<std::uint64_t>(items.integer(6))});
    });
  });
  if (!error.empty()) page = {};
  return page;
}

std::optional<QuarantineRow> SqliteConsole::quarantined(const std::string& id, std::string& error) {
  std::optional<QuarantineRow> row;
  const auto rowid = row_id(id);
  if (!rowid) return row;  // not an id we give: there is none
  with_snapshot(error, [&] {
    sqlite::Statement item;
    if (!prepare(db_, item,
                 "SELECT id, received_at, attempt_id, remote_addr, request_id, errors, body "
                 "FROM quarantine WHERE id = ?1",
                 error)) {
      return;
    }
    item.bind(1, *rowid);
    each_row(db_, item, error, [&] {
      std::string body = item.text(6);
      const auto bytes = static_cast<std::uint64_t>(body.size());
      row = QuarantineRow{id,           item.text(1), item.text(2),    item.text(3),
                          item.text(4), item.text(5), std::move(body), bytes};
    });
  });
  if (!error.empty()) row.reset();
  return row;
}

JournalCounts SqliteConsole::counts(std::string& error) {
  JournalCounts counts;
  with_snapshot(error, [&] {
    // COUNT(*) of a whole table is SQLite's fast b-tree count; a state's count is a range of the
    // state index, cheap for every state but done (most rows): done is the rest.
    sqlite::Statement events, quarantined, deliveries, in_state;
    if (!prepare(db_, events, "SELECT COUNT(*) FROM events", error) ||
        !prepare(db_, quarantined, "SELECT COUNT(*) FROM quarantine", error) ||
        !prepare(db_, deliveries, "SELECT COUNT(*) FROM deliveries", error) ||
        !prepare(db_, in_state, "SELECT COUNT(*) FROM deliveries WHERE state = ?", error)) {
      return;
    }
    each_row(db_, events, error, [&] { counts.events = events.integer(0); });
    each_row(db_, quarantined, error, [&] { counts.quarantined = quarantined.integer(0); });
    std::int64_t rest = 0;
    each_row(db_, deliveries, error, [&] { rest = deliveries.integer(0); });
    for (auto state : kStates) {
      if (state == "done") continue;
      in_state.bind(1, state);
      each_row(db_, in_state, error, [&] {
        counts.deliveries[std::string(state)] = in_state.integer(0);
        rest -= in_state.integer(0);
      });
    }
    counts.deliveries["done"] = rest;
  });
  if (!error.empty()) counts = {};
  return counts;
}

}  // namespace fbr::server
