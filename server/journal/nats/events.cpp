#include "server/journal/nats/events.hpp"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "server/journal/nats/journal.hpp"
#include "server/journal/nats/stream.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {
namespace {

using namespace nats_stream;

constexpr int kReadTimeoutMs = 5000;

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

/// Messages on `filter` in the stream (nullopt and `error` when the stream cannot be read).
std::optional<std::uint64_t> count(nats::Connection& c, const config::NatsJournal& config,
                                   const std::string& filter, std::string& error) {
  jsOptions options;
  jsOptions_Init(&options);
  options.Stream.Info.SubjectsFilter = filter.c_str();
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetStreamInfo(&info, c.js(), config.stream.c_str(), &options, &code);
  const std::string where =
      "JetStream stream " + config.stream + " on " + nats::connected_url(c.get());
  if (s == NATS_NOT_FOUND) {
    error = where + ": no such stream (no receiver has journaled to it yet)";
    return std::nullopt;
  }
  if (s != NATS_OK) {
    error = where + ": " + js_error(s, code);
    return std::nullopt;
  }
  std::uint64_t n = 0;
  if (info->State.Subjects != nullptr) {
    for (int i = 0; i < info->State.Subjects->Count; ++i)
      n += info->State.Subjects->List[i].Msgs;
  }
  jsStreamInfo_Destroy(info);
  return n;
}

/// Calls `each(msg, stream sequence)` for every message on `filter`, oldest first, through an
/// ordered ephemeral consumer (headers only when `headers_only`: bodies may be 40 MiB).
bool scan(nats::Connection& c, const config::NatsJournal& config, const std::string& filter,
          bool headers_only, const std::function<void(natsMsg*, std::uint64_t)>& each,
          std::string& error) {
  const auto total = count(c, config, filter, error);
  if (!total) return false;
  if (*total == 0) return true;
  jsSubOptions options;
  jsSubOptions_Init(&options);
  options.Stream = config.stream.c_str();
  options.Ordered = true;
  options.Config.HeadersOnly = headers_only;
  options.Config.DeliverPolicy = js_DeliverAll;
  natsSubscription* sub = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_SubscribeSync(&sub, c.js(), filter.c_str(), nullptr, &options, &code);
  if (s != NATS_OK) {
    error =
        "JetStream stream " + config.stream + ": cannot read " + filter + ": " + js_error(s, code);
    return false;
  }
  bool ok = true;
  for (;;) {
    natsMsg* msg = nullptr;
    s = natsSubscription_NextMsg(&msg, sub, kReadTimeoutMs);
    if (s != NATS_OK) {
      error =
          "JetStream stream " + config.stream + ": reading " + filter + ": " + nats::status_text(s);
      ok = false;
      break;
    }
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
      natsMsg_Destroy(msg);
      continue;  // not a stream message (flow control)
    }
    const std::uint64_t pending = meta->NumPending;
    each(msg, meta->Sequence.Stream);
    jsMsgMetaData_Destroy(meta);
    natsMsg_Destroy(msg);
    if (pending == 0) break;
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return ok;
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

  // Dead letters: (handler, event key) and (handler, stream sequence) of each.
  std::set<std::pair<std::string, std::string>> dead_keys;
  std::set<std::pair<std::string, std::uint64_t>> dead_seqs;
  std::map<std::pair<std::string, std::string>, std::string> dead_errors;
  std::map<std::pair<std::string, std::string>, int> dead_attempts;
  if (!found->empty()) {
    const bool ok = scan(
        *connection, nats, dead_letters(nats.subject), true,
        [&](natsMsg* msg, std::uint64_t) {
          const DeadLetter d = read_dead_letter(msg, nats.subject);
          const std::pair<std::string, std::string> which{d.handler, d.event_key};
          dead_keys.insert(which);
          if (!d.error.empty()) dead_errors[which] = d.error;
          if (d.attempts) dead_attempts[which] = *d.attempts;
          if (d.sequence) dead_seqs.emplace(d.handler, *d.sequence);
        },
        error);
    if (!ok) return {};
  }

  std::map<std::string, std::optional<std::uint64_t>> ack_floors;  // handler → consumer's floor
  auto ack_floor = [&](const std::string& handler) {
    auto it = ack_floors.find(handler);
    if (it != ack_floors.end()) return it->second;
    std::optional<std::uint64_t> floor;
    jsConsumerInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const std::string durable = consumer_name(handler, false);
    if (js_GetConsumerInfo(&info, connection->js(), nats.stream.c_str(), durable.c_str(), nullptr,
                           &code) == NATS_OK) {
      floor = info->AckFloor.Stream;
      jsConsumerInfo_Destroy(info);
    }
    ack_floors.emplace(handler, floor);
    return floor;
  };

  std::vector<EventRow> rows;
  for (auto& f : *found) {
    for (const auto& handler : f.handlers) {
      DeliveryRow d;
      d.handler = handler;
      const auto floor = ack_floor(handler);
      if (dead_keys.contains({handler, f.row.key}) || dead_seqs.contains({handler, f.sequence})) {
        d.state = "dead";
        if (auto e = dead_errors.find({handler, f.row.key}); e != dead_errors.end())
          d.last_error = e->second;
        if (auto a = dead_attempts.find({handler, f.row.key}); a != dead_attempts.end())
          d.attempts = a->second;
      } else if (floor && *floor >= f.sequence) {
        d.state = "done";
      } else {
        d.state = "pending";
      }
      f.row.deliveries.push_back(std::move(d));
    }
    rows.push_back(std::move(f.row));
  }
  return rows;
}

std::vector<std::string> replay_nats_event(const config::Config& config, const std::string& log_id,
                                           const std::string& handler, std::string& error) {
  const auto& nats = config.journal.nats;
  std::set<std::string> configured;
  for (const auto& h : config.handlers)
    configured.insert(h.name);
  if (!handler.empty() && !configured.contains(handler)) {
    error = "no handler named " + handler + " in the configuration";
    return {};
  }
  auto connection = connect(nats, error);
  if (!connection) return {};
  auto found = find_events(*connection, nats, log_id, 1, error);
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
      js_GetMsg(&stored, connection->js(), nats.stream.c_str(), event.sequence, nullptr, &code);
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
    auto result = nats::publish_sync(*connection, message, NatsJournal::kAckTimeoutMs, nats.stream);
    if (!result.ok) {
      error = "replay for handler " + target + " (" + message.subject + "): " + result.error;
      return replayed;
    }
    replayed.push_back(target);
  }
  return replayed;
}

}  // namespace fbr::server
