#pragma once
// Helpers for the handler-dispatch integration tests (dispatch_test.cpp): a real local HTTP target
// for the http handler, delivery-row queries on the journal, log-field parsing and process checks.
// Like the harness, nothing here knows the server's internals: only PRODUCT.md's contract and the
// journal's `deliveries` table.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/harness.hpp"

namespace fbr::itest::dispatch {

// ---------------------------------------------------------------------------------------------
// A local HTTP/1.1 target

/// One request the target received.
struct TargetRequest {
  std::string method;
  std::string target;  ///< as sent (path and query)
  std::string path;    ///< target without the query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::int64_t arrived_unix_ms = 0;  ///< when the request was complete (system clock)
  std::chrono::steady_clock::time_point arrived;

  /// The first header of that name (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const;
};

/// A small threaded HTTP/1.1 server on 127.0.0.1:<any port> (a thread per connection, keep-alive,
/// Content-Length and chunked bodies, `Expect: 100-continue`). It answers every request with the
/// status configured for its path (default 200), after the configured delay, and records it.
/// stop() (or the destructor) closes every connection, also those waiting out a delay.
class HttpTarget {
 public:
  HttpTarget();
  ~HttpTarget();
  HttpTarget(const HttpTarget&) = delete;
  HttpTarget& operator=(const HttpTarget&) = delete;

  unsigned short port() const { return port_; }
  /// "http://127.0.0.1:<port><path>"
  std::string url(std::string_view path) const;

  /// The status for requests to `path` (without query); `retry_after_s` adds `Retry-After`.
  void set_status(const std::string& path, int status, std::optional<int> retry_after_s = {});
  /// How long to wait before answering (every path).
  void set_delay(std::chrono::milliseconds delay);

  /// Requests received (complete, including those still waiting out the delay); for one path when
  /// `path` is not empty.
  std::size_t count(std::string_view path = {}) const;
  std::vector<TargetRequest> requests(std::string_view path = {}) const;
  /// Requests received and not answered yet, now and at most so far.
  int in_flight() const { return in_flight_; }
  int max_in_flight() const { return max_in_flight_; }
  /// Connections accepted so far.
  int connections() const { return connections_accepted_; }

  void stop();

 private:
  struct Answer {
    int status = 200;
    std::optional<int> retry_after_s;
  };
  void accept_loop();
  void serve(int fd);
  bool read_more(int fd, std::string& buffer) const;

  int listen_fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::atomic<int> connections_accepted_{0};

  mutable std::mutex mutex_;
  std::condition_variable stop_cv_;
  std::map<std::string, Answer> answers_;
  std::chrono::milliseconds delay_{0};
  std::vector<TargetRequest> requests_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// ---------------------------------------------------------------------------------------------
// Polling

/// Calls `condition` every `interval` until it is true (true) or `timeout` passed (false).
bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(20));

// ---------------------------------------------------------------------------------------------
// Deliveries (the journal's `deliveries` table, read-only)

struct DeliveryInfo {
  std::string handler;
  std::string state;
  int attempts = 0;
  std::int64_t next_attempt_at = 0;
  std::string last_error;
};

/// Every delivery of the event with this Log ID, ordered by handler name.
std::vector<DeliveryInfo> deliveries_of(const Server& server, std::string_view log_id);
/// The delivery of this event to this handler, if there is one.
std::optional<DeliveryInfo> delivery_of(const Server& server, std::string_view log_id,
                                        std::string_view handler);
/// Every delivery row, as "key handler state attempts" lines (for failure messages).
std::string describe_deliveries(const Server& server);

/// Polls until the delivery is in `state`; the last row seen (nullopt if none) in `last`.
bool wait_for_state(const Server& server, std::string_view log_id, std::string_view handler,
                    std::string_view state, std::chrono::milliseconds timeout,
                    std::optional<DeliveryInfo>* last = nullptr);

/// Polls until every delivery row of the journal is `done` and there are `expected` of them.
bool wait_all_done(const Server& server, long long expected, std::chrono::milliseconds timeout);

// ---------------------------------------------------------------------------------------------
// Files, logs, processes

/// The lines of a file (no trailing empty line); empty when it does not exist.
std::vector<std::string> file_lines(const std::filesystem::path& file);

/// Lines of the server log that contain every one of `needles`. With `expected` > 0, first waits
/// (up to 5 s) until at least that many are there: the service writes its log through a buffer
/// flushed every 100 ms, so a line may land a moment after the state it reports is visible.
std::vector<std::string> log_lines_with(const Server& server,
                                        const std::vector<std::string>& needles,
                                        std::size_t expected = 0);

/// The value of `key=` in a text-format log line (up to the next space; quotes stripped).
std::optional<std::string> log_field(std::string_view line, std::string_view key);

/// Writes an executable shell script.
void write_script(const std::filesystem::path& file, std::string_view body);

/// True when `pid` names a live process (a zombie counts as dead).
bool process_alive(pid_t pid);

/// The live (not zombie) processes whose process group is `pgid`, from /proc.
std::vector<pid_t> live_processes_in_group(pid_t pgid);

/// `value` as a JSON string literal.
std::string json_string(std::string_view value);

/// The `events --config F --json` output of the CLI, parsed (throws when the CLI fails).
rapidjson::Document events_json(const Server& server);

/// Percentile `p` (0..100) of `values` (nearest rank); 0 for none.
double percentile(std::vector<double> values, double p);

}  // namespace fbr::itest::dispatch
