#include "server/journal/nats/events.hpp"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "server/journal/nats/journal.hpp"
#include "server/journal/nats/reader.hpp"
#include "server/journal/nats/states.hpp"
#include "server/journal/nats/stream.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {
namespace {

using namespace nats_stream;
using nats_reader::scan;

/// A connection for one CLI command: fails at once when no server answers.
std::unique_ptr<nats::Connection> connect(const config::NatsJournal& config, std::string& error) {
  auto options = connection_options(config, error);
  if (!options) return nullptr;
  options->retry_forever = false;
  options->name = "fhir-bulk-receiver-cli";
  auto connection = nats::Connection::open(*options, error);
  if (!connection) error = "cannot connect to NATS (" + servers_shown(config) + "): " + error;
  return connection;
}

struct Found {
  std::uint64_t sequence = 0;
  EventRow row;
  std::vector<std::string> handlers;
};

bool matches(const Found& f, const std::string& log_id) {
  return log_id.empty() || f.row.log_id == log_id || f.row.key == log_id;
}

Found read_event(natsMsg* msg, std::uint64_t sequence) {
  const EventHeaders h = read_event_headers(msg);
  Found f;
  f.sequence = sequence;
  f.row.key = h.event_key;
  f.row.log_id = h.log_id;
  f.row.received_at = h.received_at;
  f.row.status = h.status;
  f.row.output_count = h.output_count;
  f.row.attempts.push_back({h.attempt_id, h.received_at, h.remote_addr, h.request_id, false});
  f.handlers = split_handlers(h.handlers);
  return f;
}

/// The newest events matching `log_id` (at most `limit`), newest first.
std::optional<std::vector<Found>> find_events(nats::Connection& c,
                                              const config::NatsJournal& config,
                                              const std::string& log_id, int limit,
                                              std::string& error) {
  std::deque<Found> kept;
  const std::size_t max = limit > 0 ? static_cast<std::size_t>(limit) : 1;
  const bool ok = scan(
      c, config, config.subject, true,
      [&](natsMsg* msg, std::uint64_t sequence) {
        Found f = read_event(msg, sequence);
        if (!matches(f, log_id)) return;
        kept.push_back(std::move(f));
        if (kept.size() > max) kept.pop_front();
      },
      error);
  if (!ok) return std::nullopt;
  return std::vector<Found>(kept.rbegin(), kept.rend());
}

}  // namespace

std::vector<EventRow> list_nats_events(const config::Config& config, const std::string& log_id,
                                       int limit, std::string& error) {
  const auto& nats = config.journal.nats;
  auto connection = connect(nats, error);
  if (!connection) return {};
  auto found = find_events(*connection, nats, log_id, limit, error);
  if (!found) return {};

  DeadLetterIndex dead;
  if (!dead.refresh(*connection, nats, error)) return {};
  auto states = DeliveryStates::read(*connection, nats, dead, error);
  if (!states) return {};
  std::vector<EventRow> rows;
  for (auto& f : *found) {
    for (const auto& handler : f.handlers) {
      const auto s = states->of(handler, f.row.key, f.sequence, std::nullopt);
      DeliveryRow d;
      d.handler = handler;
      d.state = s.state;
      d.last_error = s.last_error;
      d.attempts = s.attempts;
      f.row.deliveries.push_back(std::move(d));
    }
    rows.push_back(std::move(f.row));
  }
  return rows;
}

namespace {

/// No handler `handler` (when one is named) in the configuration: `error` says so.
bool handler_unknown(const config::Config& config, const std::string& handler, std::string& error) {
  if (handler.empty()) return false;
  for (const auto& h : config.handlers) {
    if (h.name == handler) return false;
  }
  error = "no handler named " + handler + " in the configuration";
  return true;
}

}  // namespace

std::vector<std::string> replay_nats_event(const config::Config& config, const std::string& log_id,
                                           const std::string& handler, std::string& error) {
  if (handler_unknown(config, handler, error)) return {};
  auto connection = connect(config.journal.nats, error);
  if (!connection) return {};
  return replay_nats_event(*connection, config, log_id, handler, error);
}

std::vector<std::string> replay_nats_event(nats::Connection& connection,
                                           const config::Config& config, const std::string& log_id,
                                           const std::string& handler, std::string& error) {
  const auto& nats = config.journal.nats;
  if (handler_unknown(config, handler, error)) return {};
  std::set<std::string> configured;
  for (const auto& h : config.handlers)
    configured.insert(h.name);
  auto found = find_events(connection, nats, log_id, 1, error);
  if (!found) return {};
  if (found->empty()) {
    error = "no event with Log ID " + log_id + " in JetStream stream " + nats.stream;
    return {};
  }
  const Found& event = found->front();
  std::vector<std::string> targets;
  if (!handler.empty()) {
    targets.push_back(handler);
  } else {
    for (const auto& h : event.handlers) {
      if (configured.contains(h)) targets.push_back(h);
    }
  }
  if (targets.empty()) return {};

  natsMsg* stored = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetMsg(&stored, connection.js(), nats.stream.c_str(), event.sequence, nullptr, &code);
  if (s != NATS_OK) {
    error = "JetStream stream " + nats.stream + ": cannot read message " +
            std::to_string(event.sequence) + ": " + js_error(s, code);
    return {};
  }
  auto headers = copy_headers(stored, {kHandlers, kReplayOf});
  const std::string body(natsMsg_GetData(stored),
                         static_cast<std::size_t>(natsMsg_GetDataLength(stored)));
  natsMsg_Destroy(stored);

  const std::int64_t now_ms = unix_ms_now();
  std::vector<std::string> replayed;
  for (const auto& target : targets) {
    nats::Message message =
        nats_stream::replay(nats.subject, event.row.key, event.sequence, headers, target, now_ms);
    message.body = body;
    auto result = nats::publish_sync(connection, message, NatsJournal::kAckTimeoutMs, nats.stream);
    if (!result.ok) {
      error = "replay for handler " + target + " (" + message.subject + "): " + result.error;
      return replayed;
    }
    replayed.push_back(target);
  }
  return replayed;
}

}  // namespace fbr::server
