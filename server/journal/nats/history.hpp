#pragma once
// What this process's NATS dispatcher ran, for the console: JetStream keeps a message's ack state
// but no attempt history, so the attempts of a delivery (start, duration, outcome, error) are
// those this process ran since it started, kept in memory here. Bounded: the last kMaxAttempts
// attempts of a delivery, the deliveries of the last kMaxEvents events that ran here. The
// dispatcher writes (started / finished), the console reads (of / running); also the live
// `delivery` transitions for the activity hub, published from here so both ends agree.
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/journal/console.hpp"

namespace fbr::server {

class NatsHistory {
 public:
  static constexpr std::size_t kMaxAttempts = 20;
  static constexpr std::size_t kMaxEvents = 1024;

  /// A delivery as far as this process saw it.
  struct Delivery {
    std::vector<DeliveryAttempt> history;  ///< oldest first, at most kMaxAttempts
    bool running = false;                  ///< an attempt is running here now
    std::int64_t running_since_ms = 0;     ///< when it started
    std::string last_outcome;              ///< done, retry, dead ("" while the first runs)
    std::string last_error;
    std::string updated_at;  ///< ISO 8601 UTC of the last transition
    int attempts =
        0;  ///< the last attempt's number (its message's NumDelivered: a replay starts at 1)
    std::int64_t next_attempt_at_ms = 0;  ///< after a retry: when it is due
  };

  /// Attempt `attempt` of (key, handler) starts now; publishes state "running".
  void started(const std::string& key, const std::string& log_id, const std::string& handler,
               int attempt);
  /// It ended with `outcome` (done, retry, dead) after `duration_ms`; a retry is due at
  /// `next_attempt_at_ms`. Publishes done, failed (a retry) or dead.
  void finished(const std::string& key, const std::string& log_id, const std::string& handler,
                int attempt, std::int64_t duration_ms, const std::string& outcome,
                const std::string& error, std::int64_t next_attempt_at_ms = 0);
  /// A delivery dead without an attempt (its attempts were spent elsewhere): publishes dead.
  void gave_up(const std::string& key, const std::string& log_id, const std::string& handler,
               int attempts, const std::string& error);

  [[nodiscard]] std::optional<Delivery> of(const std::string& key,
                                           const std::string& handler) const;
  /// Deliveries running in this process now.
  [[nodiscard]] std::int64_t running() const;

 private:
  Delivery& slot(const std::string& key, const std::string& handler);  // mutex_ held

  mutable std::mutex mutex_;
  std::map<std::string, std::map<std::string, Delivery>> events_;  // key → handler → delivery
  std::deque<std::string> order_;  // event keys, oldest first (the bound)
  std::int64_t running_ = 0;
};

/// Milliseconds since the epoch as ISO 8601 UTC with milliseconds (2026-05-28T22:44:52.399Z).
std::string iso_from_unix_ms(std::int64_t unix_ms);
/// An ISO 8601 UTC date or date-time (YYYY-MM-DD, optionally THH:MM[:SS[.fff]], then Z or
/// +hh:mm / -hh:mm, none meaning UTC) as milliseconds since the epoch; nullopt when it is not one.
std::optional<std::int64_t> unix_ms_from_iso(std::string_view text);

/// The live `delivery` item: {"key","log_id","handler","state","attempts","error"}.
std::string delivery_json(const std::string& key, const std::string& log_id,
                          const std::string& handler, const std::string& state, int attempts,
                          const std::string& error);

}  // namespace fbr::server
