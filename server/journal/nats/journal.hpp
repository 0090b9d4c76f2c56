#pragma once
// The journal's `nats` backend: accepted events go into a JetStream stream, so several receivers
// behind a load balancer share one journal, and JetStream's de-duplication (Nats-Msg-Id = event
// key) makes a Log ID sent to any of them a duplicate. A commit's callback runs only after
// JetStream's acknowledgement (the event is stored, on every replica the stream has).
// nats/stream.hpp documents the stream, its subjects and headers.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "server/journal/journal.hpp"
#include "server/support/log.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server {

class NatsJournal final : public Journal {
 public:
  /// How long a publish waits for JetStream's acknowledgement before the commit fails (503).
  static constexpr int kAckTimeoutMs = 5000;

  /// `max_body_bytes`: the largest event the HTTP side accepts (a smaller NATS max_payload is
  /// logged as a warning on each connect: such events would get 503s).
  NatsJournal(config::NatsJournal config, std::uint64_t max_body_bytes, const Logger& log);
  ~NatsJournal() override;
  NatsJournal(const NatsJournal&) = delete;
  NatsJournal& operator=(const NatsJournal&) = delete;

  /// Starts connecting and ensuring the stream in the background: returns at once, also when no
  /// server answers yet (the journal is then not writable: 503s until it is). An error only for
  /// settings that can never work (bad URL, unreadable credentials, token variable unset).
  std::optional<std::string> open();

  /// Publishes asynchronously; `done` runs on a libnats thread after JetStream's ack (ok, maybe
  /// duplicate) or its failure / kAckTimeoutMs without one (ok=false with the reason).
  void commit(CommitRequest request, Callback done) override;
  /// Connected, and the stream was ensured.
  [[nodiscard]] bool writable() override;
  /// Waits (a few seconds at most) for outstanding acks, fails what is left, disconnects.
  void stop() override;

  /// Why the journal is not writable now (for logs), or empty.
  [[nodiscard]] std::string unavailable_reason() const;

 private:
  struct Pending {
    Callback done;
    std::chrono::steady_clock::time_point deadline;
  };
  static void on_ack(jsCtx* js, natsMsg* msg, jsPubAck* ack, jsPubAckErr* error, void* self);
  void finish(natsMsg* msg, CommitResult result);
  void maintain();
  void fail_expired(bool all, const std::string& why);
  void publish(nats::Message message, Callback done);

  config::NatsJournal config_;
  std::uint64_t max_body_bytes_;
  const Logger& log_;
  std::unique_ptr<nats::Connection> connection_;
  jsCtx* js_ = nullptr;  // ours: its async-publish ack handler is on_ack
  std::atomic<bool> ensured_{false};
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<natsMsg*, Pending> pending_;  // published, waiting for the ack
  std::string last_error_;               // the last ensure failure
  std::thread maintainer_;               // ensures the stream, expires lost acks
};

}  // namespace fbr::server
