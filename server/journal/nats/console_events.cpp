// The console's events on NATS: pages of the events subject newest first, and one event whole.
#include <algorithm>

#include "server/journal/nats/console.hpp"
#include "server/journal/nats/stream.hpp"
#include "server/support/jose.hpp"

namespace fbr::server {
namespace {

using namespace nats_stream;

/// `q` names this event: its Log ID, key, Nats-Msg-Id, attempt ID or request ID.
bool named_by(const nats_reader::Header& h, const std::string& key, const std::string& q) {
  const auto& e = h.event;
  return q == key || q == e.log_id || q == e.msg_id || q == e.attempt_id || q == e.request_id;
}

/// since <= received < until, on the Fbr-Received-At header (an event without one matches no
/// bound).
struct TimeBounds {
  std::optional<std::int64_t> since, until;
  [[nodiscard]] bool admit(const std::string& received_at) const {
    if (!since && !until) return true;
    const auto at = unix_ms_from_iso(received_at);
    if (!at) return false;
    return (!since || *at >= *since) && (!until || *at < *until);
  }
};

std::optional<TimeBounds> time_bounds(const EventQuery& query, std::string& error) {
  TimeBounds bounds;
  for (auto [name, text, out] : {std::tuple{"since", &query.since, &bounds.since},
                                 std::tuple{"until", &query.until, &bounds.until}}) {
    if (text->empty()) continue;
    *out = unix_ms_from_iso(*text);
    if (!*out) {
      error = std::string(name) + ": not an ISO 8601 UTC time (2026-12-02T20:14:03Z)";
      return std::nullopt;
    }
  }
  return bounds;
}

}  // namespace

std::string NatsConsole::cursor_for(std::uint64_t sequence) {
  return jose::base64url_encode(std::to_string(sequence));
}

std::optional<std::uint64_t> NatsConsole::sequence_of(const std::string& cursor) {
  if (cursor.empty()) return 0;
  const auto digits = jose::base64url_decode(cursor);
  if (!digits || digits->empty() || digits->size() > 19 ||
      !std::all_of(digits->begin(), digits->end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const std::uint64_t sequence = std::stoull(*digits);
  if (sequence == 0) return std::nullopt;
  return sequence;
}

EventSummary NatsConsole::summarize(const nats_reader::Header& h, DeliveryStates& states) const {
  const auto& e = h.event;
  EventSummary s;
  s.key = key_of(e, h.sequence);
  s.log_id = e.log_id;
  s.received_at = e.received_at;
  s.status = e.status;
  s.test = h.test;
  s.output_count = e.output_count;
  s.attempts = 1;  // JetStream stores no duplicate
  for (const auto& handler : split_handlers(e.handlers)) {
    const auto state = states.of(handler, s.key, h.sequence, history_->of(s.key, handler));
    s.deliveries.push_back({handler, state.state, state.attempts});
  }
  return s;
}

EventPage NatsConsole::query_events(const EventQuery& query, std::string& error) {
  const auto before = sequence_of(query.cursor);
  if (!before) {
    error = "cursor: not a cursor of this listing (pass next_cursor as it came)";
    return {};
  }
  const auto bounds = time_bounds(query, error);
  if (!bounds) return {};
  auto* c = connection(error);
  if (c == nullptr) return {};
  auto states = this->states(*c, error);
  if (!states) return {};

  std::vector<EventSummary> kept;  // summaries of the rows `match` admitted, in order
  auto match = [&](const nats_reader::Header& h) {
    const auto& e = h.event;
    if (h.subject != nats_.subject) return false;
    if (query.status && e.status != *query.status) return false;
    // A missing Meta.Test counts as false (as in a handler's `when`).
    if (query.test && h.test.value_or(false) != *query.test) return false;
    if (!query.handler.empty() && !lists_handler(e.handlers, query.handler)) return false;
    if (!query.q.empty() && !named_by(h, key_of(e, h.sequence), query.q)) return false;
    if (!bounds->admit(e.received_at)) return false;
    if (query.state.empty()) return true;
    const EventSummary s = summarize(h, *states);
    return std::any_of(s.deliveries.begin(), s.deliveries.end(),
                       [&](const DeliverySummary& d) { return d.state == query.state; });
  };
  const int limit = std::clamp(query.limit, 1, 500);
  auto page = nats_reader::newest_first(*c, nats_, nats_.subject, *before, limit, kScanBudget,
                                        match, error);
  if (!page) return {};
  EventPage out;
  for (const auto& h : page->rows)
    out.events.push_back(summarize(h, *states));
  if (page->next != 0) out.next_cursor = cursor_for(page->next);
  return out;
}

std::optional<EventDetail> NatsConsole::event_detail(const std::string& key, std::string& error) {
  if (key.empty()) return std::nullopt;
  auto* c = connection(error);
  if (c == nullptr) return std::nullopt;
  // The newest with this key or Log ID, however old: no budget.
  auto page = nats_reader::newest_first(
      *c, nats_, nats_.subject, 0, 1, 0,
      [&](const nats_reader::Header& h) {
        return h.subject == nats_.subject &&
               (key_of(h.event, h.sequence) == key || h.event.log_id == key);
      },
      error);
  if (!page) return std::nullopt;
  if (page->rows.empty()) return std::nullopt;
  const nats_reader::Header& h = page->rows.front();
  auto states = this->states(*c, error);
  if (!states) return std::nullopt;

  natsMsg* stored = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s =
      js_GetMsg(&stored, c->js(), nats_.stream.c_str(), h.sequence, nullptr, &code);
  if (s == NATS_NOT_FOUND) return std::nullopt;  // deleted meanwhile
  if (s != NATS_OK) {
    error = nats_reader::where(*c, nats_) + ": cannot read message " + std::to_string(h.sequence) +
            ": " + js_error(s, code);
    return std::nullopt;
  }
  EventDetail detail;
  detail.body.assign(natsMsg_GetData(stored),
                     static_cast<std::size_t>(natsMsg_GetDataLength(stored)));
  natsMsg_Destroy(stored);
  detail.summary = summarize(h, *states);
  const auto& e = h.event;
  detail.attempts.push_back({e.attempt_id, e.received_at, e.remote_addr, e.request_id, false});
  for (const auto& handler : split_handlers(e.handlers)) {
    const auto here = history_->of(detail.summary.key, handler);
    const auto state = states->of(handler, detail.summary.key, h.sequence, here);
    DeliveryDetail d;
    d.handler = handler;
    d.state = state.state;
    d.attempts = state.attempts;
    d.last_error = state.last_error;
    if (here) {
      d.updated_at = here->updated_at;
      d.next_attempt_at_ms = state.state == "failed" ? here->next_attempt_at_ms : 0;
      d.history = here->history;
    }
    detail.deliveries.push_back(std::move(d));
  }
  return detail;
}

}  // namespace fbr::server
