// The console on NATS: its connection, bulk replay of the dead letters, the quarantine, counts and
// health. The events pages are in console_events.cpp.
#include "server/journal/nats/console.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "server/journal/nats/events.hpp"
#include "server/journal/nats/journal.hpp"
#include "server/journal/nats/stream.hpp"

namespace fbr::server {
namespace {

using namespace nats_stream;

// The first connect may take this long (later calls never wait for a server).
constexpr std::chrono::milliseconds kFirstConnectWait{2000};
constexpr int kHealthWaitMs = 2000;

}  // namespace

NatsConsole::NatsConsole(const config::Config& config, std::shared_ptr<const NatsHistory> history)
    : config_(config), nats_(config.journal.nats), history_(std::move(history)) {}

nats::Connection* NatsConsole::connection(std::string& error) {
  std::lock_guard lock(mutex_);
  if (connection_ != nullptr && natsConnection_IsClosed(connection_->get())) connection_.reset();
  if (connection_ == nullptr) {
    auto options = connection_options(nats_, error);
    if (!options) return nullptr;
    options->name = "fhir-bulk-receiver console";
    connection_ = nats::Connection::open(*options, error);
    if (connection_ == nullptr) return nullptr;
    const auto deadline = std::chrono::steady_clock::now() + kFirstConnectWait;
    while (!connection_->connected() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!connection_->connected()) {
    error = "not connected to NATS (" + servers_shown(nats_) + ")";
    return nullptr;
  }
  return connection_.get();
}

std::optional<DeliveryStates> NatsConsole::states(nats::Connection& c, std::string& error) {
  std::lock_guard lock(dead_mutex_);
  if (!dead_.refresh(c, nats_, error)) return std::nullopt;
  return DeliveryStates::read(c, nats_, dead_, error);
}

std::int64_t NatsConsole::replay_state(const std::string& state, std::string& error) {
  // Deliveries waiting for a retry are nak'ed messages in their consumer: JetStream redelivers
  // them when their delay is over, and nothing can bring that forward from outside.
  if (state == "failed") return 0;
  if (state != "dead") {
    error = "state: only dead (or failed) deliveries can be replayed";
    return 0;
  }
  auto* c = connection(error);
  if (c == nullptr) return 0;
  std::set<std::string> configured;
  for (const auto& h : config_.handlers)
    configured.insert(h.name);
  // One replay per (handler, event): its dead letters (an event's and its replays') go together.
  struct Group {
    std::string key;
    std::uint64_t event = 0;
    std::uint64_t newest = 0;  // the dead letter the replay is made from
    std::vector<std::uint64_t> letters;
  };
  std::map<std::pair<std::string, std::string>, Group> groups;
  {
    std::lock_guard lock(dead_mutex_);
    if (!dead_.refresh(*c, nats_, error)) return 0;
    for (const auto& [sequence, d] : dead_.letters()) {
      if (!configured.contains(d.handler)) continue;  // no consumer would take it
      const std::string event = d.sequence ? std::to_string(*d.sequence) : "key:" + d.event_key;
      Group& g = groups[{d.handler, event}];
      g.key = d.event_key;
      g.event = d.sequence.value_or(0);
      g.newest = std::max(g.newest, sequence);
      g.letters.push_back(sequence);
    }
  }

  std::int64_t replayed = 0;
  std::int64_t now_ms = unix_ms_now();
  for (const auto& [which, g] : groups) {
    const std::string& handler = which.first;
    natsMsg* letter = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_GetMsg(&letter, c->js(), nats_.stream.c_str(), g.newest, nullptr, &code);
    if (s == NATS_NOT_FOUND) continue;  // replayed by someone else meanwhile
    if (s != NATS_OK) {
      error = where_of(*c) + ": cannot read dead letter " + std::to_string(g.newest) + ": " +
              js_error(s, code);
      return replayed;
    }
    // The dead letter carries the event's body and headers; its own are not carried over.
    nats::Message m = nats_stream::replay(
        nats_.subject, g.key, g.event,
        copy_headers(letter, {kHandlers, kReplayOf, kHandler, kStreamSeq, kError, kAttempts}),
        handler, now_ms++);  // unique Nats-Msg-Id per replay, also within one millisecond
    const std::string body(natsMsg_GetData(letter),
                           static_cast<std::size_t>(natsMsg_GetDataLength(letter)));
    natsMsg_Destroy(letter);
    m.body = body;
    const auto result = nats::publish_sync(*c, m, NatsJournal::kAckTimeoutMs, nats_.stream);
    if (!result.ok) {
      error = "replay for handler " + handler + " (" + m.subject + "): " + result.error;
      return replayed;
    }
    // Replayed: its dead letters go, so the delivery is no longer counted dead. A delete that
    // fails leaves the letter; the newer replay still makes the delivery pending.
    for (const std::uint64_t sequence : g.letters) {
      code = static_cast<jsErrCode>(0);
      s = js_DeleteMsg(c->js(), nats_.stream.c_str(), sequence, nullptr, &code);
      if (s != NATS_OK && s != NATS_NOT_FOUND) {
        error = where_of(*c) + ": replayed, but cannot delete dead letter " +
                std::to_string(sequence) + ": " + js_error(s, code);
      }
    }
    ++replayed;
  }
  return replayed;
}

std::vector<std::string> NatsConsole::replay_event(const std::string& log_id,
                                                   const std::string& handler, std::string& error) {
  auto* c = connection(error);
  if (c == nullptr) return {};
  return replay_nats_event(*c, config_, log_id, handler, error);
}

std::string NatsConsole::where_of(nats::Connection& c) const {
  return nats_reader::where(c, nats_);
}

QuarantinePage NatsConsole::query_quarantine(const std::string& cursor, int limit,
                                             std::string& error) {
  const auto before = sequence_of(cursor);
  if (!before) {
    error = "cursor: not a cursor of this listing (pass next_cursor as it came)";
    return {};
  }
  auto* c = connection(error);
  if (c == nullptr) return {};
  const std::string subject = quarantine_subject(nats_.subject);
  auto page = nats_reader::newest_first(
      *c, nats_, subject, *before, std::clamp(limit, 1, 500), kScanBudget,
      [&](const nats_reader::Header& h) { return h.subject == subject; }, error);
  if (!page) return {};
  QuarantinePage out;
  for (const auto& h : page->rows) {
    QuarantineRow row;
    row.id = std::to_string(h.sequence);
    row.received_at = h.event.received_at;
    row.attempt_id = h.event.attempt_id;
    row.remote_addr = h.event.remote_addr;
    row.request_id = h.event.request_id;
    row.errors_json = h.errors.empty() ? "[]" : h.errors;
    row.bytes = h.bytes;
    out.items.push_back(std::move(row));
  }
  if (page->next != 0) out.next_cursor = cursor_for(page->next);
  return out;
}

std::optional<QuarantineRow> NatsConsole::quarantined(const std::string& id, std::string& error) {
  if (id.empty() || id.size() > 19 ||
      !std::all_of(id.begin(), id.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return std::nullopt;  // not a sequence: no such item
  }
  const std::uint64_t sequence = std::stoull(id);
  if (sequence == 0) return std::nullopt;
  auto* c = connection(error);
  if (c == nullptr) return std::nullopt;
  natsMsg* msg = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetMsg(&msg, c->js(), nats_.stream.c_str(), sequence, nullptr, &code);
  if (s == NATS_NOT_FOUND) return std::nullopt;
  if (s != NATS_OK) {
    error = where_of(*c) + ": cannot read message " + id + ": " + js_error(s, code);
    return std::nullopt;
  }
  const char* on = natsMsg_GetSubject(msg);
  std::optional<QuarantineRow> row;
  if (on != nullptr && quarantine_subject(nats_.subject) == on) {
    const EventHeaders h = read_event_headers(msg);
    row.emplace();
    row->id = id;
    row->received_at = h.received_at;
    row->attempt_id = h.attempt_id;
    row->remote_addr = h.remote_addr;
    row->request_id = h.request_id;
    row->errors_json = header(msg, kErrors);
    if (row->errors_json.empty()) row->errors_json = "[]";
    row->body.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    row->bytes = row->body.size();
  }
  natsMsg_Destroy(msg);
  return row;  // another subject's message is no quarantined payload
}

JournalCounts NatsConsole::counts(std::string& error) {
  auto* c = connection(error);
  if (c == nullptr) return {};
  JournalCounts out;
  const auto events = nats_reader::count(*c, nats_, nats_.subject, error);
  if (!events) return {};
  const auto quarantined = nats_reader::count(*c, nats_, quarantine_subject(nats_.subject), error);
  if (!quarantined) return {};
  const auto dead = nats_reader::count(*c, nats_, dead_letters(nats_.subject), error);
  if (!dead) return {};
  out.events = static_cast<std::int64_t>(*events);
  out.quarantined = static_cast<std::int64_t>(*quarantined);
  std::int64_t pending = 0, unacknowledged = 0;
  for (const auto& h : config_.handlers) {
    for (const bool replay : {false, true}) {
      if (auto counts = consumer_counts(*c, nats_.stream, consumer_name(h.name, replay))) {
        pending += static_cast<std::int64_t>(counts->pending);
        unacknowledged += counts->ack_pending;
      }
    }
  }
  const std::int64_t running = history_->running();
  out.deliveries["pending"] = pending;
  out.deliveries["running"] = running;
  out.deliveries["failed"] = std::max<std::int64_t>(0, unacknowledged - running);
  out.deliveries["dead"] = static_cast<std::int64_t>(*dead);
  return out;
}

std::vector<HealthCheck> NatsConsole::health() {
  std::vector<HealthCheck> checks;
  nats::Connection* c = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (connection_ != nullptr && connection_->connected()) c = connection_.get();
  }
  std::string error;
  if (c == nullptr) {
    // Not opened yet (or down): open() waits for the first connect only once.
    c = connection(error);
  }
  if (c == nullptr) {
    checks.push_back({"nats_connected", false, error});
    checks.push_back({"stream_present", false, "not connected to NATS"});
    return checks;
  }
  checks.push_back({"nats_connected", true, nats::connected_url(c->get())});
  jsOptions options;
  jsOptions_Init(&options);
  options.Wait = kHealthWaitMs;
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetStreamInfo(&info, c->js(), nats_.stream.c_str(), &options, &code);
  if (s == NATS_OK) {
    checks.push_back({"stream_present", true, nats_.stream});
    jsStreamInfo_Destroy(info);
  } else if (s == NATS_NOT_FOUND) {
    checks.push_back({"stream_present", false, "no stream " + nats_.stream});
  } else {
    checks.push_back({"stream_present", false, where_of(*c) + ": " + js_error(s, code)});
  }
  return checks;
}

}  // namespace fbr::server
