#pragma once
// Helpers for the production-hardening tests (hardening_test.cpp): external tools (openssl, curl,
// promtool), a test PKI, the Prometheus text format, slow-loris clients and idle sockets.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.hpp"

namespace fbr::itest::hardening {

// ---------------------------------------------------------------------------------------------
// External programs

struct ProcessResult {
  int exit_code = -1;  ///< 128+signal when killed; -1 when it timed out (then it was killed)
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
  std::string output() const { return out + err; }
};

/// Runs `args` (args[0] looked up in PATH) with `stdin_data` on standard input, capturing stdout
/// and stderr; killed at the deadline.
ProcessResult run_process(const std::vector<std::string>& args, std::string_view stdin_data = {},
                          std::chrono::milliseconds timeout = 30s);

/// True when `program` is found in PATH.
bool have_program(std::string_view program);

// ---------------------------------------------------------------------------------------------
// A test PKI made with the openssl CLI

struct TestPki {
  std::filesystem::path ca_cert;  ///< self-signed CA certificate (PEM)
  std::filesystem::path
      server_cert;  ///< for 127.0.0.1, subjectAltName IP:127.0.0.1, signed by the CA
  std::filesystem::path server_key;  ///< unencrypted PEM
  std::filesystem::path other_key;   ///< a key that belongs to no certificate here
};

/// Makes the CA, the server certificate and key, and an unrelated key in `dir` (throws with the
/// openssl output on failure).
TestPki make_test_pki(const std::filesystem::path& dir);

/// `"tls": {"cert_file": ..., "key_file": ...}` for ServerConfig::extra_members.
std::string tls_member(const std::filesystem::path& cert, const std::filesystem::path& key);

// ---------------------------------------------------------------------------------------------
// Prometheus text format (exposition format 0.0.4)

/// Everything wrong with `text` as an exposition: lines that are neither comments nor samples,
/// samples without a preceding # HELP and # TYPE of their family, families split or declared twice,
/// counters without the _total suffix, histograms whose buckets are not cumulative or do not end
/// with le="+Inf" equal to _count, or lack _sum / _count. Empty when it is well formed.
std::vector<std::string> exposition_problems(std::string_view text);

/// The value of the sample `name` whose labels are exactly `labels` (as written between the braces,
/// e.g. R"(result="accepted")", empty for none); nullopt when there is no such sample.
std::optional<double> metric_value(std::string_view text, std::string_view name,
                                   std::string_view labels = {});

// ---------------------------------------------------------------------------------------------
// Sockets

/// Raises RLIMIT_NOFILE's soft limit to min(hard limit, `wanted`); returns the soft limit now in
/// force.
unsigned long raise_nofile_limit(unsigned long wanted);

/// Blocking connect to 127.0.0.1:port; returns the descriptor (throws on failure).
int connect_loopback(unsigned short port);

/// A set of open sockets, closed on destruction.
class Sockets {
 public:
  Sockets() = default;
  ~Sockets();
  Sockets(const Sockets&) = delete;
  Sockets& operator=(const Sockets&) = delete;
  void add(int fd) { fds_.push_back(fd); }
  void close_all();
  std::size_t size() const { return fds_.size(); }
  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
};

/// True when the peer has closed (EOF or reset) `fd`, waiting at most `timeout` for it; any
/// bytes read on the way are appended to `received`.
bool wait_closed(int fd, std::chrono::milliseconds timeout, std::string* received = nullptr);

/// What the slow-loris clients saw.
struct SlowLorisResult {
  std::size_t connections = 0;
  std::vector<std::optional<std::chrono::milliseconds>> closed_after;  ///< from its connect
  std::size_t bytes_sent = 0;      ///< in all, one byte per connection per interval
  std::size_t bytes_received = 0;  ///< in all (the server should answer nothing)
  std::chrono::milliseconds connect_phase{0};
};

/// Opens `count` connections to 127.0.0.1:port and, on each, sends `header` one byte every
/// `interval` until the server closes it or `give_up` (from the start) passes. `on_connected`
/// runs once every connection is open (e.g. to start a normal client alongside).
class SlowLoris {
 public:
  SlowLoris(unsigned short port, std::size_t count, std::string header,
            std::chrono::milliseconds interval, std::chrono::milliseconds give_up);
  /// Connects them all (blocking connects, so that each is in the server's accept queue).
  void connect();
  /// Sends and waits (see above); returns when every connection is closed or at `give_up`.
  SlowLorisResult run();
  /// How many are still open (safe to call from another thread while run() runs).
  std::size_t open_now() const;

 private:
  unsigned short port_;
  std::size_t count_;
  std::string header_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds give_up_;
  Sockets sockets_;
  std::vector<std::chrono::steady_clock::time_point> connected_at_;
  std::chrono::milliseconds connect_phase_{0};
  std::atomic<std::size_t> open_{0};
};

// ---------------------------------------------------------------------------------------------
// The server's log

/// Polls the log until `needle` occurs at least `times` times; false at the deadline.
bool wait_for_count(const Server& server, std::string_view needle, std::size_t times,
                    std::chrono::milliseconds timeout = 5s);

/// How many times `needle` occurs in the log.
std::size_t count_in_log(const Server& server, std::string_view needle);

}  // namespace fbr::itest::hardening
