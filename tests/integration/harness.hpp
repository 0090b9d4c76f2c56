#pragma once
// Integration-test harness: runs the real fhir-bulk-receiver binary in a temp dir, talks HTTP to it
// over loopback, runs its CLI, and reads its journal. Nothing here knows the server's internals:
// only the contract (PRODUCT.md) — config keys, the port announced in the log, the journal tables.
#include <rapidjson/document.h>
#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/skip.hpp"

struct sqlite3;

namespace fbr::itest {

/// Milliseconds from `start` to now.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

using namespace std::chrono_literals;

/// A test that cannot run here says why and returns: `return skip_test("no nats-server");`. The
/// process exits 77 (ctest: skipped) unless an assertion failed first; `make test` fails on any
/// skip unless FBR_ALLOW_SKIPS=1. See tests/skip.hpp.
using fbr::test::skip_test;

/// A fresh directory under /tmp, removed (with everything in it) on destruction. Set
/// FBR_ITEST_KEEP=1 to keep it for a post-mortem; its path is then printed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& file);
void write_file(const std::filesystem::path& file, std::string_view bytes);

// ---------------------------------------------------------------------------------------------
// Events

/// Log ID of tests/fixtures/events/complete.json (the seed example).
inline const std::string kSeedLogId = "d9f5d293-7110-461e-a875-3beb089e79f3";

/// Bytes of tests/fixtures/events/<name>.
std::string fixture(std::string_view name);
std::filesystem::path fixture_path(std::string_view name);

/// A random RFC 4122 version 4 UUID (thread-safe).
std::string new_log_id();

/// complete.json with Meta.Logs[0].ID replaced by `log_id`.
std::string event_with_log_id(std::string_view log_id);

/// Same, grown by an unknown top-level field holding `padding_bytes` characters (unknown fields are
/// kept and do not fail validation), for bodies of a chosen size.
std::string event_with_padding(std::string_view log_id, std::size_t padding_bytes);

// ---------------------------------------------------------------------------------------------
// JSON

/// Parses `text`; the result HasParseError() when it is not JSON.
rapidjson::Document parse_json(std::string_view text);

/// The value at JSON Pointer `pointer` serialized as JSON ("true", "\"x\"", "[1]"), or
/// "<absent>" when there is none.
std::string json_raw(const rapidjson::Value& root, const char* pointer);

/// The string at `pointer`, or "<absent>" / "<not a string: RAW>".
std::string json_str(const rapidjson::Value& root, const char* pointer);

// ---------------------------------------------------------------------------------------------
// The server process

/// The server's config file; data_dir is always <tempdir>/data.
struct ServerConfig {
  /// nullopt: the key is left out.
  std::optional<std::vector<std::string>> tokens = std::vector<std::string>{"test-token"};
  std::string log_format = "text";
  std::string invalid_payloads;  ///< empty: left out (default "reject")
  std::string extra_members;     ///< more raw JSON members, e.g. R"("max_body_bytes": 1024)"
  /// Set: the server starts under `ulimit -n` of this (soft and hard RLIMIT_NOFILE, set by a
  /// shell that then execs it; the pid stays the server's).
  std::optional<unsigned> open_files_limit;
  /// More NAME=VALUE entries for the server process's environment (e.g. LD_PRELOAD), added after
  /// the test's own environment minus FBR_*.
  std::vector<std::string> environment;

  std::string listen = "127.0.0.1:0";  ///< e.g. "[::]:0"
  std::string log_level = "info";
};

std::string config_json(const ServerConfig& config, const std::filesystem::path& data_dir);

/// The server binary started with `serve --config FILE`, stdout and stderr appended to a log file.
/// The constructor returns once the log announced the port (throws if the process exits first or
/// the deadline passes). The destructor SIGTERMs, then SIGKILLs after a grace period.
class Server {
 public:
  /// Writes <dir>/config.json (data_dir <dir>/data, log <dir>/server.log) and starts.
  explicit Server(const TempDir& dir, const ServerConfig& config = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  unsigned short port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  const std::filesystem::path& config_path() const { return config_path_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  std::filesystem::path journal_path() const { return data_dir_ / "journal.sqlite"; }
  const std::filesystem::path& log_path() const { return log_path_; }

  /// Starts the process (again); a new port is picked and announced.
  void start();
  /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code (128+signal if killed by
  /// one, -1 if it was not running).
  int terminate(std::chrono::milliseconds grace = 10s);
  /// SIGKILL and reap.
  void kill9();
  /// Waits up to `timeout` for the process to exit by itself (after a signal the test sent), then
  /// SIGKILLs it. Returns the exit code as terminate() does (-1 if it was not running).
  int wait_exit(std::chrono::milliseconds timeout);
  /// terminate() if running, then start() on the same config and data dir.
  void restart();

  /// The whole log file (all runs).
  std::string log() const;
  std::vector<std::string> log_lines() const;
  /// The last lines of the log, for failure messages.
  std::string log_tail(std::size_t lines = 40) const;
  /// Polls the log until it contains `needle`; false at the deadline.
  bool wait_for_log(std::string_view needle, std::chrono::milliseconds timeout = 5s) const;
  /// Polls the log for a line that contains every one of `needles`; nullopt at the deadline.
  std::optional<std::string> wait_for_line(const std::vector<std::string>& needles,
                                           std::chrono::milliseconds timeout = 5s) const;

 private:
  std::filesystem::path config_path_;
  std::filesystem::path data_dir_;
  std::filesystem::path log_path_;
  std::vector<std::string> environment_;
  pid_t pid_ = -1;
  unsigned short port_ = 0;
  std::optional<unsigned> open_files_limit_;
};

// ---------------------------------------------------------------------------------------------
// HTTP over loopback

struct HttpRequest {
  std::string method = "POST";
  std::string target = "/webhook";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;  ///< Transfer-Encoding: chunked instead of Content-Length
};

/// POST /webhook with Content-Type: application/json and `verification-token: token`.
HttpRequest post_event(std::string body, std::string token = "test-token");
HttpRequest get(std::string target);

struct HttpResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool keep_alive = false;

  /// The first header of that name (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const;
};

/// One request on a new connection (Boost.Beast, synchronous). Throws on transport errors and
/// when no response arrived within `timeout`.
HttpResponse http(unsigned short port, const HttpRequest& request,
                  std::chrono::milliseconds timeout = 30s);

/// A keep-alive connection: every send() uses the same socket; it never reconnects, so a send
/// after the server closed the connection throws.
class HttpConnection {
 public:
  explicit HttpConnection(unsigned short port);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  HttpResponse send(const HttpRequest& request, std::chrono::milliseconds timeout = 30s);
  /// The client side's port: the same value before and after proves one TCP connection.
  unsigned short local_port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The request as bytes on the wire (HTTP/1.1), Host and Content-Length/chunking included.
std::string serialize(const HttpRequest& request);

/// What a raw-socket exchange saw.
struct RawExchange {
  std::string received;                 ///< every byte read
  std::size_t bytes_written = 0;        ///< how much of the data went out before writing stopped
  bool closed = false;                  ///< the server closed (EOF) or reset the connection
  std::vector<HttpResponse> responses;  ///< complete responses parsed from `received`, in order
};

/// Connects, writes `data` (one write call when it fits the socket buffer) while reading, and
/// stops when `responses` complete responses arrived (and, if `until_closed`, the connection was
/// closed by the server), or at the deadline. Write errors (the server closed early) stop the
/// writing only.
RawExchange raw_exchange(unsigned short port, std::string_view data, std::size_t responses,
                         bool until_closed, std::chrono::milliseconds timeout = 30s);

/// Complete responses in `raw`, in order (`eof`: the stream ended after it).
std::vector<HttpResponse> parse_responses(std::string_view raw, bool eof);

// ---------------------------------------------------------------------------------------------
// The CLI

struct CliResult {
  int exit_code = -1;  ///< 128+signal when killed; -1 when it timed out
  std::string out;
  std::string err;
  std::string output() const { return out + err; }
};

/// Runs FBR_BINARY with `args` (stdin from `stdin_data`), capturing stdout and stderr. Killed at
/// the deadline.
CliResult run_cli(const std::vector<std::string>& args, std::string_view stdin_data = {},
                  std::chrono::milliseconds timeout = 30s);

/// The same for any program (argv[0] looked up in PATH), e.g. curl, openssl, promtool. Its
/// environment is the test's minus FBR_*.
CliResult run_program(const std::vector<std::string>& argv, std::string_view stdin_data = {},
                      std::chrono::milliseconds timeout = 30s);

// ---------------------------------------------------------------------------------------------
// Helper servers (nats-server, haproxy, ...)

/// A port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close).
unsigned short free_port();
/// True when something accepts TCP connections on 127.0.0.1:port.
bool accepts_connections(unsigned short port);

/// A long-running program started by a test (argv[0] looked up in PATH), its stdout and stderr
/// appended to `log`. Killed (SIGTERM, then SIGKILL) and reaped on destruction.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, std::filesystem::path log);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  /// False once it has exited (reaps it).
  bool running();
  /// Sends `signal` and waits for the exit (SIGKILL after `grace`). No-op when not running.
  void stop(int signal = SIGTERM, std::chrono::milliseconds grace = 5s);
  /// The log so far.
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::filesystem::path log_;
};

// ---------------------------------------------------------------------------------------------
// The journal

/// The journal SQLite file opened read-only.
class Journal {
 public:
  explicit Journal(const std::filesystem::path& file);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  using Row = std::vector<std::optional<std::string>>;  ///< nullopt: SQL NULL

  /// Rows of a query with `?` parameters bound as text; columns as bytes (integers as text).
  std::vector<Row> query(std::string_view sql, const std::vector<std::string>& params = {}) const;
  /// SELECT COUNT(*) FROM table [WHERE where].
  long long count(std::string_view table, std::string_view where = {},
                  const std::vector<std::string>& params = {}) const;

 private:
  sqlite3* db_ = nullptr;
};

/// Rows of the server's journal table (0 when the server has no journal file yet).
long long journal_count(const Server& server, std::string_view table, std::string_view where = {},
                        const std::vector<std::string>& params = {});

/// A tmpfs mounted on a directory, unmounted on destruction (lazily when busy).
class TmpfsMount {
 public:
  /// nullptr with `why` set when mounting fails (e.g. not permitted here).
  static std::unique_ptr<TmpfsMount> mount(const std::filesystem::path& dir, std::string options,
                                           std::string& why);
  ~TmpfsMount();
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  /// Returns an error description, empty on success.
  std::string remount(bool read_only);

 private:
  TmpfsMount(std::filesystem::path dir, std::string options)
      : dir_(std::move(dir)), options_(std::move(options)) {}
  std::filesystem::path dir_;
  std::string options_;
};

/// Writes a file in `dir` until the file system is full (ENOSPC); returns its size.
std::size_t fill_file_system(const std::filesystem::path& file);

}  // namespace fbr::itest
