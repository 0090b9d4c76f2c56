#pragma once
// Helpers for the download handler's integration tests (download_test.cpp): nginx from Debian's
// package run as a child process on a loopback port, an HTTP file server written here for the
// faults nginx cannot be asked for (503 then 200, a transfer cut in the middle, a stall, a 401
// unless the bearer token matches, a redirect), the synthea fixture export, and events that
// point at them. Nothing here knows the handler's internals, only what lands on disk.
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
#include <vector>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/harness.hpp"

namespace fbr::itest::download {

using dispatch::TargetRequest;

// ---------------------------------------------------------------------------------------------
// Export data

/// The synthea fixture: 17 types, one NDJSON file each.
struct SourceFile {
  std::string type;
  std::string gz;      ///< the fixture's bytes (.ndjson.gz)
  std::string ndjson;  ///< decompressed
  std::size_t lines = 0;
};

/// tests/fixtures/synthea-r4/*.ndjson.gz, decompressed (by gzip -dc), sorted by type.
const std::vector<SourceFile>& synthea();

/// `text` compressed by `gzip -c` (a real gzip file, not the service's own encoder).
std::string gzip_with_tool(std::string_view text);
/// `data` decompressed by `gzip -dc`.
std::string gunzip_with_tool(std::string_view data);

/// `count` lines of `type` resources, each about `line_bytes` long.
std::string generated_ndjson(std::string_view type, std::size_t count, std::size_t line_bytes);

// ---------------------------------------------------------------------------------------------
// Events

struct EventFile {
  EventFile(std::string type, std::string url, std::optional<std::int64_t> count = std::nullopt)
      : type(std::move(type)), url(std::move(url)), count(count) {}
  std::string type;
  std::string url;
  std::optional<std::int64_t> count;
};

/// A complete (status 200) status-check-response with this Log ID and these files.
std::string export_event(const std::string& log_id, const std::vector<EventFile>& output,
                         bool requires_access_token, const std::vector<EventFile>& error = {},
                         const std::vector<EventFile>& deleted = {});

/// A download handler entry for ServerConfig's "handlers" array; `more`: extra members. The test
/// servers are on 127.0.0.1, which the egress policy refuses by default: unless `more` sets
/// allowed_hosts or allow_private_addresses itself, the entry has "allowed_hosts": ["127.0.0.1"].
std::string download_handler(const std::string& name, const std::filesystem::path& dir,
                             const std::string& more = {});

/// The server's config with these handlers and fast delivery retries (the tests wait for
/// outcomes, not for back-off).
ServerConfig download_config(const std::vector<std::string>& handlers);

/// POSTs the event; fails the test unless the answer is 200.
void post_ok(const Server& server, const std::string& body);
/// Waits (30 s) for the delivery to reach `state`; fails the test with the journal and the log
/// otherwise.
dispatch::DeliveryInfo wait_state(const Server& server, const std::string& log_id,
                                  const std::string& handler, const std::string& state);

// ---------------------------------------------------------------------------------------------
// Files on disk

/// Every regular file under `dir`, relative, sorted.
std::vector<std::string> files_under(const std::filesystem::path& dir);
/// Permission bits of a path.
unsigned mode_of(const std::filesystem::path& path);
/// The lines of a log.ndjson that parse as JSON, as (eventId, eventDetail JSON) pairs; a line
/// that does not parse is returned as ("<invalid>", line).
std::vector<std::pair<std::string, std::string>> export_log(const std::filesystem::path& file);

// ---------------------------------------------------------------------------------------------
// nginx

/// nginx (Debian's package) serving `root` on 127.0.0.1:<free port>, as a child process with its
/// config, logs and temp dirs in `dir`; stopped (SIGTERM, then SIGKILL) on destruction.
/// Locations: /encoded/ serves X.gz for X with Content-Encoding: gzip (gzip_static); everything
/// else as-is.
class Nginx {
 public:
  /// nullopt when /usr/sbin/nginx is missing (the test then skips, saying why).
  static std::optional<std::string> unavailable();

  Nginx(const std::filesystem::path& dir, const std::filesystem::path& root);
  ~Nginx();
  Nginx(const Nginx&) = delete;
  Nginx& operator=(const Nginx&) = delete;

  unsigned short port() const { return port_; }
  std::string url(std::string_view path) const;
  /// The access log's lines.
  std::vector<std::string> access_log() const;

 private:
  void stop();
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  unsigned short port_ = 0;
};

// ---------------------------------------------------------------------------------------------
// A file server with faults

/// How FileServer answers requests for one path.
struct Resource {
  std::string body;
  std::string content_encoding;  ///< sent as Content-Encoding when not empty (body as given)
  bool ranges = true;            ///< Accept-Ranges: bytes, an ETag, 206 for "Range: bytes=N-"
  bool ignores_range = false;    ///< announces ranges (above) but answers every Range with 200
  std::vector<int> statuses;     ///< the first requests get these statuses, in order, no body
  std::optional<int> retry_after_s;
  std::optional<std::string> bearer;  ///< 401 unless "Authorization: Bearer <this>"
  /// 401 unless "Authorization: Bearer <token>" with bearer_check(token) true (e.g. a token the
  /// SMART test token server issued and has not revoked).
  std::function<bool(std::string_view)> bearer_check;
  std::optional<std::size_t> cut_at;    ///< the first body answer closes after this many bytes
  std::optional<std::size_t> stall_at;  ///< the first body answer waits here until release()
  std::string redirect_to;              ///< 302 to this URL instead
  /// Every body answer sends dribble_bytes, then waits dribble_every, and so on (a slow server).
  std::optional<std::chrono::milliseconds> dribble_every;
  std::size_t dribble_bytes = 0;

  explicit Resource(std::string text = {}) : body(std::move(text)) {}
  Resource& without_ranges() {
    ranges = false;
    return *this;
  }
  Resource& ignoring_range() {
    ignores_range = true;
    return *this;
  }
  Resource& first_answers(std::vector<int> codes, std::optional<int> retry_after = {}) {
    statuses = std::move(codes);
    retry_after_s = retry_after;
    return *this;
  }
  Resource& with_bearer(std::string token) {
    bearer = std::move(token);
    return *this;
  }
  Resource& with_bearer_check(std::function<bool(std::string_view)> check) {
    bearer_check = std::move(check);
    return *this;
  }
  Resource& cut_after(std::size_t bytes) {
    cut_at = bytes;
    return *this;
  }
  Resource& stall_after(std::size_t bytes) {
    stall_at = bytes;
    return *this;
  }
  Resource& redirecting_to(std::string url) {
    redirect_to = std::move(url);
    return *this;
  }
  Resource& dribbled(std::size_t bytes, std::chrono::milliseconds every) {
    dribble_bytes = bytes;
    dribble_every = every;
    return *this;
  }
};

/// An HTTP/1.1 server on 127.0.0.1:<any port> (or another loopback address, standing for another
/// host), one thread per connection, one request per connection. Unknown paths get 404. Every
/// connection and request is recorded.
class FileServer {
 public:
  explicit FileServer(const std::string& address = "127.0.0.1");
  ~FileServer();
  FileServer(const FileServer&) = delete;
  FileServer& operator=(const FileServer&) = delete;

  unsigned short port() const { return port_; }
  std::string url(std::string_view path) const;
  void put(const std::string& path, Resource resource);

  std::vector<TargetRequest> requests(std::string_view path = {}) const;
  std::size_t count(std::string_view path = {}) const;
  /// Connections accepted (a request or not).
  std::size_t connections() const { return connections_; }
  /// A body answer is waiting at its stall point.
  bool stalled() const { return stalled_; }
  /// Body answers being dribbled now (their client has not gone away).
  int dribbling() const { return dribbling_; }
  /// Lets stalled answers go on.
  void release();
  void stop();

 private:
  void accept_loop();
  void serve(int fd);
  void send_body(int fd, std::string_view body, std::optional<std::size_t> cut,
                 std::optional<std::size_t> stall);
  void send_dribbled(int fd, std::string_view body, std::size_t bytes,
                     std::chrono::milliseconds every);

  int listen_fd_ = -1;
  std::string address_;
  unsigned short port_ = 0;
  std::atomic<std::size_t> connections_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stalled_{false};
  std::atomic<int> dribbling_{0};
  bool released_ = false;
  mutable std::mutex mutex_;
  std::condition_variable release_cv_;
  std::map<std::string, Resource> resources_;
  std::map<std::string, int> body_answers_;  ///< per path: answers that sent a body
  std::vector<TargetRequest> requests_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace fbr::itest::download
