#include "server/journal/nats/states.hpp"

#include "server/journal/nats/reader.hpp"
#include "server/journal/nats/stream.hpp"

namespace fbr::server {
namespace {

using namespace nats_stream;

std::uint64_t number(const std::string& text) {
  std::uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return 0;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

}  // namespace

std::optional<ConsumerCounts> consumer_counts(nats::Connection& c, const std::string& stream,
                                              const std::string& durable) {
  jsConsumerInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (js_GetConsumerInfo(&info, c.js(), stream.c_str(), durable.c_str(), nullptr, &code) !=
      NATS_OK) {
    return std::nullopt;
  }
  ConsumerCounts counts{info->NumPending, info->NumAckPending, info->AckFloor.Stream};
  jsConsumerInfo_Destroy(info);
  return counts;
}

bool DeadLetterIndex::read_from(nats::Connection& c, const config::NatsJournal& config,
                                std::uint64_t from, std::string& error) {
  return nats_reader::read_range(
      c, config, dead_letters(config.subject), from, 0, true,
      [&](natsMsg* msg, const jsMsgMetaData& meta) {
        letters_[meta.Sequence.Stream] = read_dead_letter(msg, config.subject);
        read_to_ = std::max(read_to_, meta.Sequence.Stream);
        return true;
      },
      error);
}

bool DeadLetterIndex::refresh(nats::Connection& c, const config::NatsJournal& config,
                              std::string& error) {
  const auto stored = nats_reader::count(c, config, dead_letters(config.subject), error);
  if (!stored) return false;
  if (*stored == letters_.size() && *stored == 0) return true;
  if (!read_from(c, config, read_to_ + 1, error)) return false;
  if (letters_.size() == *stored) return true;
  // Some went (replayed, or deleted by hand): read them all again.
  letters_.clear();
  read_to_ = 0;
  return read_from(c, config, 1, error);
}

std::optional<DeliveryStates> DeliveryStates::read(nats::Connection& c,
                                                   const config::NatsJournal& config,
                                                   const DeadLetterIndex& dead,
                                                   std::string& error) {
  DeliveryStates states;
  states.connection_ = &c;
  states.stream_ = config.stream;
  auto keep = [](auto& map, const auto& which, const Dead& d) {
    auto [it, fresh] = map.emplace(which, d);
    if (!fresh && d.letter > it->second.letter) it->second = d;
  };
  for (const auto& [sequence, d] : dead.letters()) {
    const Dead entry{d.error, d.attempts, sequence};
    keep(states.dead_by_key_, std::pair{d.handler, d.event_key}, entry);
    if (d.sequence) keep(states.dead_by_seq_, std::pair{d.handler, *d.sequence}, entry);
  }

  // Replays: per handler's replay subject, only those past its replay consumer's ack floor.
  const auto subjects = nats_reader::subjects(c, config, config.subject + ".replay.>", error);
  if (!subjects) return std::nullopt;
  const std::string prefix = config.subject + ".replay.";
  for (const auto& [subject, messages] : *subjects) {
    const std::string handler = subject.substr(prefix.size());
    const auto floor = consumer_counts(c, config.stream, consumer_name(handler, true));
    const bool ok = nats_reader::read_range(
        c, config, subject, floor ? floor->ack_floor + 1 : 1, 0, true,
        [&](natsMsg* msg, const jsMsgMetaData& meta) {
          const std::uint64_t of = number(header(msg, kReplayOf));
          auto& newest = states.replays_[{handler, of}];
          newest = std::max(newest, meta.Sequence.Stream);
          return true;
        },
        error);
    if (!ok) return std::nullopt;
  }
  return states;
}

const DeliveryStates::Dead* DeliveryStates::dead(const std::string& handler, const std::string& key,
                                                 std::uint64_t sequence) const {
  const Dead* by_key = nullptr;
  if (auto it = dead_by_key_.find({handler, key}); it != dead_by_key_.end()) by_key = &it->second;
  const Dead* by_seq = nullptr;
  if (auto it = dead_by_seq_.find({handler, sequence}); it != dead_by_seq_.end())
    by_seq = &it->second;
  if (by_key == nullptr) return by_seq;
  if (by_seq == nullptr) return by_key;
  return by_key->letter >= by_seq->letter ? by_key : by_seq;
}

std::optional<std::uint64_t> DeliveryStates::ack_floor(const std::string& handler) {
  if (auto it = floors_.find(handler); it != floors_.end()) return it->second;
  std::optional<std::uint64_t> floor;
  if (connection_ != nullptr) {
    if (auto counts = consumer_counts(*connection_, stream_, consumer_name(handler, false)))
      floor = counts->ack_floor;
  }
  floors_.emplace(handler, floor);
  return floor;
}

DeliveryStates::State DeliveryStates::of(const std::string& handler, const std::string& key,
                                         std::uint64_t sequence,
                                         const std::optional<NatsHistory::Delivery>& here) {
  State s;
  if (here) {
    s.attempts = here->attempts;
    s.last_error = here->last_error;
  }
  const Dead* d = dead(handler, key, sequence);
  if (d != nullptr) s.dead_letter = d->letter;
  if (here && here->running) {
    s.state = "running";
    return s;
  }
  const auto replay = replays_.find({handler, sequence});
  const bool replay_pending =
      replay != replays_.end() && (d == nullptr || replay->second > d->letter);
  if (replay_pending) {
    s.state = here && here->last_outcome == "retry" ? "failed" : "pending";
    return s;
  }
  if (d != nullptr) {
    s.state = "dead";
    if (d->attempts) s.attempts = *d->attempts;
    if (!d->error.empty()) s.last_error = d->error;
    return s;
  }
  const auto floor = ack_floor(handler);
  if ((floor && *floor >= sequence) || (here && here->last_outcome == "done")) {
    s.state = "done";
  } else if (here && here->last_outcome == "retry") {
    s.state = "failed";
  } else if (here && here->last_outcome == "dead") {
    s.state = "dead";  // its dead letter is not written yet
  } else {
    s.state = "pending";
  }
  return s;
}

}  // namespace fbr::server
