#pragma once
// Where a delivery stands, as far as JetStream can tell: the stream keeps each message's ack state
// in its consumers, not per (event, handler), so a delivery's state is derived (the `events`
// command and the console agree on it):
//   running  this process runs it now (NatsHistory)
//   pending  a replay of it waits on <subject>.replay.<handler> (newer than any dead letter), or
//            nothing below says otherwise
//   failed   (with a pending replay, or when nothing else is known) its last attempt here asked
//            for a retry: the message waits out its delay in the consumer
//   dead     a dead letter exists for it (matched by Fbr-Event-Key or Fbr-Stream-Seq)
//   done     the handler's events consumer's ack floor has passed the event's sequence, or its
//            last attempt here was done
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "server/journal/nats/history.hpp"
#include "server/journal/nats/stream.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {

/// The dead letters of the stream (headers only), read in full once, then only those added since:
/// a count that no longer adds up (some were deleted: replayed) reads them all again. Not
/// thread-safe: its owner serialises refresh() and the reads of letters().
class DeadLetterIndex {
 public:
  /// Brings the index up to date. False and `error` when the stream cannot be read.
  bool refresh(nats::Connection& c, const config::NatsJournal& config, std::string& error);
  /// By the dead letter's own stream sequence.
  [[nodiscard]] const std::map<std::uint64_t, nats_stream::DeadLetter>& letters() const {
    return letters_;
  }

 private:
  bool read_from(nats::Connection& c, const config::NatsJournal& config, std::uint64_t from,
                 std::string& error);
  std::map<std::uint64_t, nats_stream::DeadLetter> letters_;
  std::uint64_t read_to_ = 0;  // the highest sequence read
};

class DeliveryStates {
 public:
  /// The states with these dead letters (up to date) and the replays not yet acknowledged (read
  /// here, headers only). nullopt and `error` when the stream cannot be read.
  static std::optional<DeliveryStates> read(nats::Connection& c, const config::NatsJournal& config,
                                            const DeadLetterIndex& dead, std::string& error);

  struct State {
    std::string state;  ///< pending, running, done, failed, dead
    int attempts = 0;   ///< a dead letter's Fbr-Attempts, or the attempts this process saw
    std::string last_error;
    std::uint64_t dead_letter = 0;  ///< its dead letter's stream sequence, 0 none
  };
  /// The state of (event `key` at stream `sequence`, `handler`); `here` is what this process saw.
  State of(const std::string& handler, const std::string& key, std::uint64_t sequence,
           const std::optional<NatsHistory::Delivery>& here);

 private:
  struct Dead {
    std::string error;
    std::optional<int> attempts;
    std::uint64_t letter = 0;  // the dead letter's own sequence (the newest)
  };
  const Dead* dead(const std::string& handler, const std::string& key,
                   std::uint64_t sequence) const;
  /// The events consumer's ack floor of `handler` (read once).
  std::optional<std::uint64_t> ack_floor(const std::string& handler);

  nats::Connection* connection_ = nullptr;
  std::string stream_;
  std::map<std::pair<std::string, std::string>, Dead> dead_by_key_;
  std::map<std::pair<std::string, std::uint64_t>, Dead> dead_by_seq_;
  // (handler, event sequence) → the newest replay of it not yet acknowledged.
  std::map<std::pair<std::string, std::uint64_t>, std::uint64_t> replays_;
  std::map<std::string, std::optional<std::uint64_t>> floors_;
};

/// What a durable consumer has out.
struct ConsumerCounts {
  std::uint64_t pending = 0;     ///< not delivered yet
  std::int64_t ack_pending = 0;  ///< delivered, not acknowledged (running, or waiting to retry)
  std::uint64_t ack_floor = 0;   ///< stream sequence
};
/// nullopt when the consumer does not exist (or cannot be read).
std::optional<ConsumerCounts> consumer_counts(nats::Connection& c, const std::string& stream,
                                              const std::string& durable);

}  // namespace fbr::server
