#include "tests/integration/harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <thread>

extern char** environ;

namespace fbr::itest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A write to a socket the server already closed must be an error, not the end of the test run.
[[maybe_unused]] const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

// The interval of every poll loop below: short enough not to slow a test down, long enough not to
// spin. Waiting is always bounded by a deadline, never by this.
constexpr auto kPollInterval = 5ms;

std::string errno_text(int error) {
  return std::strerror(error);
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// ---- processes

struct SpawnIo {
  fs::path stdin_path = "/dev/null";
  fs::path stdout_path;
  fs::path stderr_path;  ///< empty: stderr goes where stdout goes
  bool append = false;
  std::vector<std::string> environment;  ///< more NAME=VALUE entries
};

pid_t spawn(const std::vector<std::string>& args, const SpawnIo& io) {
  std::vector<char*> argv;
  for (const auto& arg : args)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  // The caller's environment minus FBR_* overrides (the config file alone configures the server)
  // and minus the names io.environment sets.
  const auto overridden = [&](const char* entry) {
    return std::ranges::any_of(io.environment, [&](const std::string& mine) {
      const auto name = mine.substr(0, mine.find('=') + 1);
      return std::strncmp(entry, name.c_str(), name.size()) == 0;
    });
  };
  std::vector<char*> envp;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, "FBR_", 4) != 0 && !overridden(*entry)) envp.push_back(*entry);
  }
  for (const auto& entry : io.environment)
    envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  const std::string in = io.stdin_path.string();
  const std::string out = io.stdout_path.string();
  const std::string err = io.stderr_path.string();
  const int out_flags = O_WRONLY | O_CREAT | (io.append ? O_APPEND : O_TRUNC);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), out_flags, 0600);
  if (err.empty()) {
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), out_flags, 0600);
  }

  // The child starts with default dispositions and no blocked signals, whatever the test runner
  // set up for itself (we ignore SIGPIPE, for one).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT})
    sigaddset(&defaults, sig);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t mask;
  sigemptyset(&mask);
  posix_spawnattr_setsigmask(&attr, &mask);
  posix_spawnattr_setflags(&attr,
                           static_cast<short>(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK));

  pid_t pid = -1;
  // PATH lookup for bare names (curl, openssl, promtool); absolute paths are used as they are.
  const int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("posix_spawnp " + args.front() + ": " + errno_text(rc));
  return pid;
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/// The exit code if `pid` has exited (and reaps it), nullopt while it runs.
std::optional<int> try_reap(pid_t pid) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) return exit_code_of(status);
  if (r < 0 && errno != EINTR) return -1;  // not our child any more: treat as gone
  return std::nullopt;
}

std::optional<int> wait_until(pid_t pid, Clock::time_point deadline) {
  for (;;) {
    if (auto code = try_reap(pid)) return code;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollInterval);
  }
}

int wait_blocking(pid_t pid) {
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, 0);
    if (r == pid) return exit_code_of(status);
    if (r < 0 && errno != EINTR) return -1;
  }
}

std::optional<unsigned short> port_in(const std::string& line) {
  static const std::regex text_form(R"(port=(\d+))");
  static const std::regex json_form(R"("port"\s*:\s*(\d+))");
  std::smatch m;
  if (!std::regex_search(line, m, text_form) && !std::regex_search(line, m, json_form)) {
    return std::nullopt;
  }
  const long port = std::stol(m[1].str());
  if (port <= 0 || port > 65535) return std::nullopt;
  return static_cast<unsigned short>(port);
}

// ---- HTTP

/// Shuts the socket down if an operation on it takes longer than `timeout`: a blocking Beast
/// call then fails instead of hanging the test until ctest's timeout.
class Watchdog {
 public:
  Watchdog(int fd, std::chrono::milliseconds timeout)
      : thread_([this, fd, timeout](std::stop_token stop) {
          std::mutex mutex;
          std::condition_variable_any cv;
          std::unique_lock lock(mutex);
          cv.wait_for(lock, stop, timeout, [] { return false; });
          if (!stop.stop_requested()) {
            fired_ = true;
            ::shutdown(fd, SHUT_RDWR);
          }
        }) {}
  bool fired() const { return fired_; }

 private:
  std::atomic<bool> fired_{false};
  std::jthread thread_;
};

bool iequals(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

bool has_header(const HttpRequest& request, std::string_view name) {
  return std::ranges::any_of(request.headers,
                             [&](const auto& h) { return iequals(h.first, name); });
}

bool sends_length(const HttpRequest& request) {
  return !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
         request.method == "PATCH";
}

http::request<http::string_body> to_beast(const HttpRequest& request, unsigned short port) {
  http::request<http::string_body> req;
  req.version(11);
  const auto verb = http::string_to_verb(request.method);
  if (verb == http::verb::unknown) {
    req.method_string(request.method);
  } else {
    req.method(verb);
  }
  req.target(request.target);
  if (!has_header(request, "host")) req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (const auto& [name, value] : request.headers)
    req.insert(name, value);
  req.body() = request.body;
  if (request.chunked) {
    req.chunked(true);
  } else if (sends_length(request)) {
    req.content_length(request.body.size());
  }
  return req;
}

HttpResponse to_response(http::response<http::string_body>&& res) {
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  out.keep_alive = res.keep_alive();
  for (const auto& field : res) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(res.body());
  return out;
}

struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

}  // namespace

// ---------------------------------------------------------------------------------------------

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "fbr-itest-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + pattern + ": " + errno_text(errno));
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  const char* keep = std::getenv("FBR_ITEST_KEEP");
  if (keep != nullptr && *keep != '\0' && std::string_view(keep) != "0") {
    std::fprintf(stderr, "FBR_ITEST_KEEP: kept %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& file, std::string_view bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

// ---------------------------------------------------------------------------------------------

fs::path fixture_path(std::string_view name) {
  return fs::path(FBR_FIXTURES) / "events" / std::string(name);
}

std::string fixture(std::string_view name) {
  return read_file(fixture_path(name));
}

std::string new_log_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::uint64_t hi = (rng() & 0xFFFFFFFFFFFF0FFFull) | 0x0000000000004000ull;  // version 4
  const std::uint64_t lo = (rng() & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // RFC 4122
  char text[40];
  std::snprintf(text, sizeof text, "%08llx-%04llx-%04llx-%04llx-%012llx",
                static_cast<unsigned long long>(hi >> 32),
                static_cast<unsigned long long>((hi >> 16) & 0xFFFF),
                static_cast<unsigned long long>(hi & 0xFFFF),
                static_cast<unsigned long long>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFull));
  return text;
}

std::string event_with_log_id(std::string_view log_id) {
  static const std::string seed = fixture("complete.json");
  std::string body = seed;
  const auto at = body.find(kSeedLogId);
  if (at == std::string::npos) throw std::runtime_error("complete.json lacks the seed Log ID");
  body.replace(at, kSeedLogId.size(), log_id);
  return body;
}

std::string event_with_padding(std::string_view log_id, std::size_t padding_bytes) {
  std::string body = event_with_log_id(log_id);
  const auto brace = body.find('{');
  body.insert(brace + 1, "\"padding\":\"" + std::string(padding_bytes, 'x') + "\",");
  return body;
}

// ---------------------------------------------------------------------------------------------

rapidjson::Document parse_json(std::string_view text) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  return doc;
}

std::string json_raw(const rapidjson::Value& root, const char* pointer) {
  const rapidjson::Pointer p(pointer);
  if (!p.IsValid()) return "<bad pointer>";
  const rapidjson::Value* value = p.Get(root);
  if (value == nullptr) return "<absent>";
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value->Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

std::string json_str(const rapidjson::Value& root, const char* pointer) {
  const rapidjson::Pointer p(pointer);
  const rapidjson::Value* value = p.IsValid() ? p.Get(root) : nullptr;
  if (value == nullptr) return "<absent>";
  if (!value->IsString()) return "<not a string: " + json_raw(root, pointer) + ">";
  return {value->GetString(), value->GetStringLength()};
}

// ---------------------------------------------------------------------------------------------

std::string config_json(const ServerConfig& config, const fs::path& data_dir) {
  std::string out = "{\n  \"listen\": " + json_quote(config.listen) + ",\n";
  if (config.tokens) {
    out += "  \"verification_tokens\": [";
    for (std::size_t i = 0; i < config.tokens->size(); ++i) {
      out += (i == 0 ? "" : ", ") + json_quote((*config.tokens)[i]);
    }
    out += "],\n";
  }
  out += "  \"data_dir\": " + json_quote(data_dir.string()) + ",\n";
  if (!config.invalid_payloads.empty()) {
    out += "  \"invalid_payloads\": " + json_quote(config.invalid_payloads) + ",\n";
  }
  if (!config.extra_members.empty()) out += "  " + config.extra_members + ",\n";
  out += "  \"log\": {\"level\": " + json_quote(config.log_level) +
         ", \"format\": " + json_quote(config.log_format) + "}\n}\n";
  return out;
}

Server::Server(const TempDir& dir, const ServerConfig& config)
    : config_path_(dir.path() / "config.json"),
      data_dir_(dir.path() / "data"),
      log_path_(dir.path() / "server.log"),
      environment_(config.environment),
      open_files_limit_(config.open_files_limit) {
  write_file(config_path_, config_json(config, data_dir_));
  start();
}

Server::~Server() {
  try {
    terminate();
  } catch (...) {  // a destructor must not throw; the process is reaped by terminate() anyway
  }
}

void Server::start() {
  if (pid_ > 0) throw std::logic_error("server already running");
  std::error_code ec;
  const auto size = fs::file_size(log_path_, ec);
  const std::size_t offset = ec ? 0 : static_cast<std::size_t>(size);
  std::vector<std::string> argv{FBR_BINARY, "serve", "--config", config_path_.string()};
  if (open_files_limit_) {
    argv.insert(argv.begin(),
                {"/bin/sh", "-c",
                 "ulimit -n " + std::to_string(*open_files_limit_) + " && exec \"$0\" \"$@\""});
  }
  pid_ = spawn(argv, {.stdin_path = "/dev/null",
                      .stdout_path = log_path_,
                      .stderr_path = {},
                      .append = true,
                      .environment = environment_});

  const auto deadline = Clock::now() + 20s;
  for (;;) {
    const std::string all = log();
    const std::string run = all.size() > offset ? all.substr(offset) : std::string();
    std::istringstream lines(run);
    std::string line;
    // Only complete lines: the announcement may be half written when we look.
    while (std::getline(lines, line) && !lines.eof()) {
      if (line.find("listening") == std::string::npos) continue;
      if (auto port = port_in(line)) {
        port_ = *port;
        return;
      }
    }
    if (auto code = try_reap(pid_)) {
      pid_ = -1;
      throw std::runtime_error("server exited with code " + std::to_string(*code) +
                               " before announcing its port; its log:\n" + run);
    }
    if (Clock::now() >= deadline) {
      kill9();
      throw std::runtime_error("server did not log `listening ... port=N` within 20 s; its log:\n" +
                               run);
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

int Server::terminate(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  return wait_exit(grace);
}

int Server::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  auto code = wait_until(pid_, Clock::now() + timeout);
  if (!code) {
    ::kill(pid_, SIGKILL);
    code = wait_blocking(pid_);
  }
  pid_ = -1;
  port_ = 0;
  return *code;
}

void Server::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_blocking(pid_);
  pid_ = -1;
  port_ = 0;
}

void Server::restart() {
  terminate();
  start();
}

std::string Server::log() const {
  std::error_code ec;
  if (!fs::exists(log_path_, ec)) return {};
  return read_file(log_path_);
}

std::vector<std::string> Server::log_lines() const {
  std::vector<std::string> out;
  std::istringstream in(log());
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

std::string Server::log_tail(std::size_t lines) const {
  const auto all = log_lines();
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += all[i] + "\n";
  }
  return out;
}

bool Server::wait_for_log(std::string_view needle, std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (log().find(needle) != std::string::npos) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

std::optional<std::string> Server::wait_for_line(const std::vector<std::string>& needles,
                                                 std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    for (const auto& line : log_lines()) {
      const bool all = std::ranges::all_of(needles, [&](const std::string& needle) {
        return line.find(needle) != std::string::npos;
      });
      if (all) return line;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollInterval);
  }
}

// ---------------------------------------------------------------------------------------------

HttpRequest post_event(std::string body, std::string token) {
  HttpRequest request;
  request.headers = {{"Content-Type", "application/json"},
                     {"verification-token", std::move(token)}};
  request.body = std::move(body);
  return request;
}

HttpRequest get(std::string target) {
  HttpRequest request;
  request.method = "GET";
  request.target = std::move(target);
  return request;
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return std::nullopt;
}

struct HttpConnection::Impl {
  asio::io_context ioc;
  asio::ip::tcp::socket socket{ioc};
  beast::flat_buffer buffer;
  unsigned short port = 0;
};

HttpConnection::HttpConnection(unsigned short port) : impl_(std::make_unique<Impl>()) {
  impl_->port = port;
  boost::system::error_code ec;
  impl_->socket.connect({asio::ip::make_address_v4("127.0.0.1"), port}, ec);
  if (ec)
    throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " + ec.message());
}

HttpConnection::~HttpConnection() = default;

unsigned short HttpConnection::local_port() const {
  boost::system::error_code ec;
  const auto endpoint = impl_->socket.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

HttpResponse HttpConnection::send(const HttpRequest& request, std::chrono::milliseconds timeout) {
  auto req = to_beast(request, impl_->port);
  const Watchdog watchdog(impl_->socket.native_handle(), timeout);
  const auto fail = [&](const char* what, const beast::error_code& ec) {
    if (watchdog.fired()) {
      return std::runtime_error(std::string("HTTP ") + what + ": no answer within " +
                                std::to_string(timeout.count()) + " ms");
    }
    return std::runtime_error(std::string("HTTP ") + what + ": " + ec.message());
  };
  beast::error_code ec;
  http::write(impl_->socket, req, ec);
  if (ec) throw fail("write", ec);
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  http::read(impl_->socket, impl_->buffer, parser, ec);
  if (ec) throw fail("read", ec);
  return to_response(parser.release());
}

HttpResponse http(unsigned short port, const HttpRequest& request,
                  std::chrono::milliseconds timeout) {
  HttpConnection connection(port);
  return connection.send(request, timeout);
}

std::string serialize(const HttpRequest& request) {
  std::string out = request.method + " " + request.target + " HTTP/1.1\r\n";
  if (!has_header(request, "host")) out += "Host: 127.0.0.1\r\n";
  for (const auto& [name, value] : request.headers)
    out += name + ": " + value + "\r\n";
  if (request.chunked) {
    out += "Transfer-Encoding: chunked\r\n\r\n";
    constexpr std::size_t kChunk = 1 << 20;
    for (std::size_t at = 0; at < request.body.size(); at += kChunk) {
      const std::size_t n = std::min(kChunk, request.body.size() - at);
      char size_line[32];
      std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
      out += size_line;
      out.append(request.body, at, n);
      out += "\r\n";
    }
    out += "0\r\n\r\n";
    return out;
  }
  if (sends_length(request))
    out += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  out += "\r\n";
  out += request.body;
  return out;
}

std::vector<HttpResponse> parse_responses(std::string_view raw, bool eof) {
  std::vector<HttpResponse> out;
  std::size_t offset = 0;
  while (offset < raw.size()) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    parser.eager(true);
    beast::error_code ec;
    std::size_t used = 0;
    while (!parser.is_done()) {
      const std::size_t n =
          parser.put(asio::buffer(raw.data() + offset + used, raw.size() - offset - used), ec);
      used += n;
      if (ec == http::error::need_more) {
        ec = {};
        if (n == 0 || offset + used == raw.size()) break;
        continue;
      }
      if (ec) return out;  // not HTTP: what came before is all there is
    }
    if (!parser.is_done() && eof) parser.put_eof(ec);
    if (!parser.is_done()) break;
    out.push_back(to_response(parser.release()));
    offset += used;
  }
  return out;
}

RawExchange raw_exchange(unsigned short port, std::string_view data, std::size_t responses,
                         bool until_closed, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + errno_text(errno));
  const FdCloser closer{fd};
  // A send buffer large enough that pipelined requests leave in one write call.
  const int sndbuf = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " +
                             errno_text(errno));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

  RawExchange ex;
  bool writing = !data.empty();
  const auto deadline = Clock::now() + timeout;
  std::vector<char> buffer(1 << 16);
  for (;;) {
    if (ex.closed) break;
    if (ex.responses.size() >= responses && !until_closed) break;
    const auto now = Clock::now();
    if (now >= deadline) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    pollfd p{fd, static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count() + 1, 100)));
    if (ready < 0 && errno != EINTR) throw std::runtime_error("poll: " + errno_text(errno));
    if (ready <= 0) continue;
    if (writing && (p.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      for (;;) {
        const ssize_t n = ::send(fd, data.data() + ex.bytes_written, data.size() - ex.bytes_written,
                                 MSG_NOSIGNAL);
        if (n > 0) {
          ex.bytes_written += static_cast<std::size_t>(n);
          if (ex.bytes_written == data.size()) {
            writing = false;
            break;
          }
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        writing = false;  // EPIPE / ECONNRESET: the server stopped reading and closed
        break;
      }
    }
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      for (;;) {
        const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
        if (n > 0) {
          ex.received.append(buffer.data(), static_cast<std::size_t>(n));
          continue;
        }
        if (n == 0) {
          ex.closed = true;
          break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        ex.closed = true;  // ECONNRESET after the server closed with our data still unread
        break;
      }
      ex.responses = parse_responses(ex.received, ex.closed);
    }
  }
  return ex;
}

// ---------------------------------------------------------------------------------------------

CliResult run_cli(const std::vector<std::string>& args, std::string_view stdin_data,
                  std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{FBR_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, stdin_data, timeout);
}

CliResult run_program(const std::vector<std::string>& argv, std::string_view stdin_data,
                      std::chrono::milliseconds timeout) {
  if (argv.empty()) throw std::invalid_argument("run_program: no program");
  const TempDir io;
  write_file(io.path() / "stdin", stdin_data);
  const pid_t pid = spawn(argv, {.stdin_path = io.path() / "stdin",
                                 .stdout_path = io.path() / "stdout",
                                 .stderr_path = io.path() / "stderr",
                                 .append = false,
                                 .environment = {}});
  CliResult result;
  if (auto code = wait_until(pid, Clock::now() + timeout)) {
    result.exit_code = *code;
  } else {
    ::kill(pid, SIGKILL);
    wait_blocking(pid);
    result.exit_code = -1;
  }
  result.out = read_file(io.path() / "stdout");
  result.err = read_file(io.path() / "stderr");
  return result;
}

// ---------------------------------------------------------------------------------------------

unsigned short free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t length = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool accepts_connections(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

ChildProcess::ChildProcess(std::vector<std::string> argv, fs::path log) : log_(std::move(log)) {
  pid_ = spawn(argv, {.stdout_path = log_, .stderr_path = {}, .append = true, .environment = {}});
}

ChildProcess::~ChildProcess() {
  stop(SIGTERM, 5s);
}

bool ChildProcess::running() {
  if (pid_ < 0) return false;
  if (try_reap(pid_)) pid_ = -1;
  return pid_ > 0;
}

void ChildProcess::stop(int signal, std::chrono::milliseconds grace) {
  if (pid_ < 0) return;
  ::kill(pid_, signal);
  if (!wait_until(pid_, Clock::now() + grace)) {
    ::kill(pid_, SIGKILL);
    wait_blocking(pid_);
  }
  pid_ = -1;
}

std::string ChildProcess::log() const {
  return read_file(log_);
}

// ---------------------------------------------------------------------------------------------

Journal::Journal(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) throw std::runtime_error("no journal at " + file.string());
  const int rc = sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr);
  if (rc != SQLITE_OK) {
    const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("open " + file.string() + " read-only: " + why);
  }
  sqlite3_busy_timeout(db_, 5000);
}

Journal::~Journal() {
  sqlite3_close(db_);
}

std::vector<Journal::Row> Journal::query(std::string_view sql,
                                         const std::vector<std::string>& params) const {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK) {
    throw std::runtime_error("prepare `" + std::string(sql) + "`: " + sqlite3_errmsg(db_));
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    sqlite3_bind_text(stmt, static_cast<int>(i + 1), params[i].data(),
                      static_cast<int>(params[i].size()), SQLITE_TRANSIENT);
  }
  std::vector<Row> rows;
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      const std::string why = sqlite3_errmsg(db_);
      sqlite3_finalize(stmt);
      throw std::runtime_error("step `" + std::string(sql) + "`: " + why);
    }
    Row row;
    for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
      if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
        row.emplace_back(std::nullopt);
        continue;
      }
      const auto* bytes = static_cast<const char*>(sqlite3_column_blob(stmt, c));
      const auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt, c));
      row.emplace_back(bytes == nullptr ? std::string() : std::string(bytes, size));
    }
    rows.push_back(std::move(row));
  }
  sqlite3_finalize(stmt);
  return rows;
}

long long Journal::count(std::string_view table, std::string_view where,
                         const std::vector<std::string>& params) const {
  std::string sql = "SELECT COUNT(*) FROM " + std::string(table);
  if (!where.empty()) sql += " WHERE " + std::string(where);
  const auto rows = query(sql, params);
  return std::stoll(rows.at(0).at(0).value_or("0"));
}

long long journal_count(const Server& server, std::string_view table, std::string_view where,
                        const std::vector<std::string>& params) {
  std::error_code ec;
  if (!fs::exists(server.journal_path(), ec)) return 0;
  return Journal(server.journal_path()).count(table, where, params);
}

// ---------------------------------------------------------------------------------------------

std::unique_ptr<TmpfsMount> TmpfsMount::mount(const fs::path& dir, std::string options,
                                              std::string& why) {
  fs::create_directories(dir);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    why = "mount -t tmpfs -o " + options + " tmpfs " + dir.string() + ": " + errno_text(errno);
    return nullptr;
  }
  return std::unique_ptr<TmpfsMount>(new TmpfsMount(dir, std::move(options)));
}

TmpfsMount::~TmpfsMount() {
  if (::umount2(dir_.c_str(), 0) != 0) ::umount2(dir_.c_str(), MNT_DETACH);
}

std::string TmpfsMount::remount(bool read_only) {
  const unsigned long flags = static_cast<unsigned long>(MS_REMOUNT) |
                              (read_only ? static_cast<unsigned long>(MS_RDONLY) : 0UL);
  if (::mount("tmpfs", dir_.c_str(), "tmpfs", flags, options_.c_str()) != 0) {
    return "mount -o remount," + std::string(read_only ? "ro " : "rw ") + dir_.string() + ": " +
           errno_text(errno);
  }
  return {};
}

std::size_t fill_file_system(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("open " + file.string() + ": " + errno_text(errno));
  const FdCloser closer{fd};
  const std::string chunk(1 << 16, 'f');
  std::size_t size = chunk.size();
  std::size_t total = 0;
  for (;;) {
    const ssize_t n = ::write(fd, chunk.data(), size);
    if (n > 0) {
      total += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != ENOSPC) throw std::runtime_error("write: " + errno_text(errno));
    if (size == 1) break;  // not one more byte fits
    size /= 2;
  }
  return total;
}

}  // namespace fbr::itest
