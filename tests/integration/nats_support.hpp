#pragma once
// NATS for the integration tests: real nats-server processes (Debian's package) with JetStream on
// 127.0.0.1 — one node or a 3-node cluster — and a small libnats client to look into streams and
// consumers from the outside. Nothing here knows the receiver's internals, only the contract:
// stream, subjects, headers, durable consumer names.
#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

namespace fbr::itest {

/// nats-server with JetStream: `nodes` == 1 is a single server, 3 a cluster (routes between all,
/// JetStream meta group over the three). Each node stores in its own dir under a TempDir, so a
/// killed node restarted with start(i) comes back with its data. The constructor returns once
/// every node's /healthz says ok (throws with the servers' logs at the deadline).
class NatsCluster {
 public:
  /// nullopt when nats-server is not installed (tests then skip, saying why).
  static std::optional<std::string> unavailable();

  /// `extra_config`: more lines for every node's config file, e.g. "max_payload: 4096".
  explicit NatsCluster(int nodes = 1, const std::string& extra_config = {});
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  /// nats://127.0.0.1:<port> of every node / of node i.
  std::vector<std::string> urls() const;
  std::string url(int i = 0) const;
  /// The "servers" JSON array for a receiver config: ["nats://...", ...].
  std::string servers_json() const;
  unsigned short client_port(int i = 0) const { return nodes_.at(i).client_port; }

  /// SIGKILL node i (no clean shutdown).
  void kill(int i);
  /// Starts node i again (same ports, same store); waits for its /healthz.
  void start(int i);
  bool running(int i);
  /// The process id of node i (-1 when it is not running), e.g. to SIGSTOP it.
  pid_t pid(int i = 0) const;
  /// Every node's log, for failure messages.
  std::string logs() const;

 private:
  struct Node {
    unsigned short client_port = 0, cluster_port = 0, monitor_port = 0;
    std::filesystem::path config;
    std::filesystem::path log;
    std::unique_ptr<ChildProcess> process;
  };
  void wait_healthy(int i, std::chrono::milliseconds timeout);
  TempDir dir_;
  std::vector<Node> nodes_;
};

/// One message read back from a stream.
struct StreamMessage {
  std::uint64_t sequence = 0;
  std::string subject;
  std::string data;
  std::map<std::string, std::string> headers;  ///< first value of each header
};

struct ConsumerState {
  std::uint64_t num_pending = 0;     ///< not yet delivered
  std::int64_t num_ack_pending = 0;  ///< delivered, not yet acknowledged
  std::int64_t num_redelivered = 0;
  std::uint64_t ack_floor = 0;  ///< stream sequence
  std::uint64_t delivered = 0;  ///< stream sequence
};

/// A libnats client for assertions: connects to any of `urls` (throws if none answers).
class NatsProbe {
 public:
  explicit NatsProbe(const std::vector<std::string>& urls);
  ~NatsProbe();
  NatsProbe(const NatsProbe&) = delete;
  NatsProbe& operator=(const NatsProbe&) = delete;

  /// Every message of `stream` (optionally only those on `subject`), in sequence order; throws if
  /// the stream does not exist.
  std::vector<StreamMessage> messages(const std::string& stream, const std::string& subject = {});
  /// Number of messages in the stream (nullopt: no such stream).
  std::optional<std::uint64_t> stream_messages(const std::string& stream);
  /// The stream's replicas as configured (nullopt: no such stream).
  std::optional<int> stream_replicas(const std::string& stream);
  /// A durable consumer's state (nullopt: no such consumer).
  std::optional<ConsumerState> consumer(const std::string& stream, const std::string& durable);
  /// Creates a stream with these subjects (file storage, 1 replica unless said).
  void add_stream(const std::string& stream, const std::vector<std::string>& subjects,
                  int replicas = 1);
  /// Publishes to JetStream and waits for the ack; returns true for a duplicate.
  bool publish(const std::string& subject, const std::string& data, const std::string& msg_id = {},
               const std::map<std::string, std::string>& headers = {});

  natsConnection* connection() const { return conn_; }
  jsCtx* js() const { return js_; }

 private:
  natsConnection* conn_ = nullptr;
  jsCtx* js_ = nullptr;
};

}  // namespace fbr::itest
