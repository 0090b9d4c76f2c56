#include "tests/integration/download_support.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace fbr::itest::download {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const char* const kNginx = "/usr/sbin/nginx";

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

/// Runs `command` with /bin/sh, `input` on its stdin (through a temp file); its stdout.
std::string filter(const std::string& command, std::string_view input) {
  char name[] = "/tmp/fbr-dl-filter-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  ::close(fd);
  write_file(name, input);
  FILE* pipe = ::popen((command + " < " + shell_quote(name)).c_str(), "r");
  if (pipe == nullptr) {
    ::unlink(name);
    throw std::runtime_error("popen " + command + " failed");
  }
  std::string out;
  char buffer[65536];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
    out.append(buffer, n);
  const int status = ::pclose(pipe);
  ::unlink(name);
  if (status != 0)
    throw std::runtime_error(command + " failed with status " + std::to_string(status));
  return out;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 206:
      return "Partial Content";
    case 302:
      return "Found";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Export data

std::string gzip_with_tool(std::string_view text) {
  return filter("gzip -c", text);
}

std::string gunzip_with_tool(std::string_view data) {
  return filter("gzip -dc", data);
}

const std::vector<SourceFile>& synthea() {
  static const std::vector<SourceFile> files = [] {
    std::vector<SourceFile> out;
    const fs::path dir = fs::path(FBR_FIXTURES) / "synthea-r4";
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      static constexpr std::string_view kSuffix = ".ndjson.gz";
      if (!name.ends_with(kSuffix)) continue;
      SourceFile f;
      f.type = name.substr(0, name.size() - kSuffix.size());
      f.gz = read_file(entry.path());
      f.ndjson = gunzip_with_tool(f.gz);
      f.lines = static_cast<std::size_t>(std::count(f.ndjson.begin(), f.ndjson.end(), '\n'));
      out.push_back(std::move(f));
    }
    std::sort(out.begin(), out.end(),
              [](const SourceFile& a, const SourceFile& b) { return a.type < b.type; });
    return out;
  }();
  return files;
}

std::string generated_ndjson(std::string_view type, std::size_t count, std::size_t line_bytes) {
  std::string out;
  out.reserve(count * (line_bytes + 1));
  for (std::size_t i = 0; i < count; ++i) {
    std::string line = R"({"resourceType":")" + std::string(type) + R"(","id":"r-)" +
                       std::to_string(i) + R"(","status":"final","note":")";
    if (line.size() + 2 < line_bytes)
      line.append(line_bytes - line.size() - 2, static_cast<char>('a' + i % 26));
    out += line + "\"}\n";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Events

namespace {

std::string files_json(const std::vector<EventFile>& files) {
  std::string out = "[";
  for (std::size_t i = 0; i < files.size(); ++i) {
    out += (i == 0 ? "\n    " : ",\n    ");
    out += R"({"type": )" + dispatch::json_string(files[i].type) + R"(, "url": )" +
           dispatch::json_string(files[i].url);
    if (files[i].count) out += R"(, "count": )" + std::to_string(*files[i].count);
    out += "}";
  }
  return out + "]";
}

}  // namespace

std::string export_event(const std::string& log_id, const std::vector<EventFile>& output,
                         bool requires_access_token, const std::vector<EventFile>& error,
                         const std::vector<EventFile>& deleted) {
  std::string body = R"({
  "Meta": {
    "DataModel": "FHIR Bulk Data Access",
    "EventType": "status-check-response",
    "EventDateTime": "2024-02-20T10:00:05.000Z",
    "Test": true,
    "Logs": [{"ID": )" +
                     dispatch::json_string(log_id) + R"(, "AttemptID": )" +
                     dispatch::json_string(new_log_id()) + R"(}]
  },
  "status": 200,
  "transactionTime": "2024-02-20T10:00:00Z",
  "request": "https://ehr.example.org/fhir/$export?_type=Patient",
  "requiresAccessToken": )" +
                     std::string(requires_access_token ? "true" : "false") +
                     R"(,
  "output": )" + files_json(output) +
                     R"(,
  "error": )" + files_json(error);
  if (!deleted.empty()) body += ",\n  \"deleted\": " + files_json(deleted);
  return body + "\n}\n";
}

std::string download_handler(const std::string& name, const fs::path& dir,
                             const std::string& more) {
  const bool sets_egress = more.find("\"allowed_hosts\"") != std::string::npos ||
                           more.find("\"allow_private_addresses\"") != std::string::npos;
  return R"({"name": )" + dispatch::json_string(name) + R"(, "type": "download", "dir": )" +
         dispatch::json_string(dir.string()) + R"(, "max_retry_wait_ms": 3000)" +
         (sets_egress ? "" : R"(, "allowed_hosts": ["127.0.0.1"])") +
         (more.empty() ? "" : ", " + more) + "}";
}

ServerConfig download_config(const std::vector<std::string>& handlers) {
  ServerConfig config;
  config.extra_members =
      R"("retry": {"max_attempts": 4, "initial_backoff_ms": 50, "max_backoff_ms": 300},)"
      "\n  \"handlers\": [";
  for (std::size_t i = 0; i < handlers.size(); ++i)
    config.extra_members += (i == 0 ? "" : ", ") + handlers[i];
  config.extra_members += "]";
  return config;
}

void post_ok(const Server& server, const std::string& body) {
  const auto r = http(server.port(), post_event(body));
  REQUIRE_MESSAGE(r.status == 200, "POST answered ", r.status, " ", r.body);
}

dispatch::DeliveryInfo wait_state(const Server& server, const std::string& log_id,
                                  const std::string& handler, const std::string& state) {
  std::optional<dispatch::DeliveryInfo> last;
  const bool reached =
      dispatch::wait_for_state(server, log_id, handler, state, std::chrono::seconds(30), &last);
  INFO(dispatch::describe_deliveries(server));
  INFO(server.log_tail(30));
  REQUIRE_MESSAGE(reached, "delivery of ", log_id, " to ", handler, " never became ", state,
                  " (last error: ", last ? last->last_error : "<no row>", ")");
  return *last;
}

// ---------------------------------------------------------------------------------------------
// Files on disk

std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file()) out.push_back(fs::relative(it->path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

std::vector<std::pair<std::string, std::string>> export_log(const fs::path& file) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& line : dispatch::file_lines(file)) {
    const auto doc = parse_json(line);
    if (doc.HasParseError() || !doc.IsObject()) {
      out.emplace_back("<invalid>", line);
      continue;
    }
    out.emplace_back(json_str(doc, "/eventId"), json_raw(doc, "/eventDetail"));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// nginx

std::optional<std::string> Nginx::unavailable() {
  if (::access(kNginx, X_OK) != 0) {
    return std::string(kNginx) + " is missing (scripts/install-deps.sh installs nginx)";
  }
  return std::nullopt;
}

Nginx::Nginx(const fs::path& dir, const fs::path& root) : dir_(dir) {
  fs::create_directories(dir_);
  std::string why;
  for (int tries = 0; tries < 5 && pid_ < 0; ++tries) {
    port_ = free_port();
    const std::string d = dir_.string();
    write_file(dir_ / "nginx.conf",
               "daemon off;\nmaster_process off;\nworker_processes 1;\n"
               "pid " +
                   d + "/nginx.pid;\nerror_log " + d +
                   "/error.log warn;\n"
                   "events { worker_connections 256; }\n"
                   "http {\n"
                   "  access_log " +
                   d +
                   "/access.log;\n"
                   "  client_body_temp_path " +
                   d +
                   "/client_body;\n"
                   "  proxy_temp_path " +
                   d +
                   "/proxy;\n"
                   "  fastcgi_temp_path " +
                   d +
                   "/fastcgi;\n"
                   "  uwsgi_temp_path " +
                   d +
                   "/uwsgi;\n"
                   "  scgi_temp_path " +
                   d +
                   "/scgi;\n"
                   "  types { application/fhir+ndjson ndjson; "
                   "application/gzip gz; }\n"
                   "  default_type application/octet-stream;\n"
                   "  sendfile on;\n"
                   "  server {\n"
                   "    listen 127.0.0.1:" +
                   std::to_string(port_) +
                   ";\n"
                   "    root " +
                   root.string() +
                   ";\n"
                   "    location /encoded/ { gzip_static on; }\n"
                   "  }\n"
                   "}\n");
    const std::string out = (dir_ / "nginx.out").string();
    std::vector<std::string> args = {kNginx,          "-p", d, "-c", d + "/nginx.conf", "-e",
                                     d + "/error.log"};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT})
      sigaddset(&defaults, sig);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, kNginx, &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw std::runtime_error(std::string("posix_spawn nginx: ") + std::strerror(rc));
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    bool exited = false;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;  // e.g. the port was taken meanwhile: try another
        break;
      }
      if (accepts_connections(port_)) {
        pid_ = pid;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (pid_ < 0 && !exited) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    why = read_file(out);
  }
  if (pid_ < 0) throw std::runtime_error("nginx did not start: " + why);
}

Nginx::~Nginx() {
  stop();
}

void Nginx::stop() {
  if (pid_ < 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) != pid_) {
    if (Clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
}

std::string Nginx::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

std::vector<std::string> Nginx::access_log() const {
  return dispatch::file_lines(dir_ / "access.log");
}

// ---------------------------------------------------------------------------------------------
// FileServer

FileServer::FileServer(const std::string& address) : address_(address) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1 || !address.starts_with("127.")) {
    throw std::runtime_error("FileServer: not a loopback IPv4 address: " + address);
  }
  socklen_t length = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    throw std::runtime_error("FileServer: cannot listen");
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

FileServer::~FileServer() {
  stop();
}

std::string FileServer::url(std::string_view path) const {
  return "http://" + address_ + ":" + std::to_string(port_) + std::string(path);
}

void FileServer::put(const std::string& path, Resource resource) {
  std::lock_guard lock(mutex_);
  resources_[path] = std::move(resource);
}

std::vector<TargetRequest> FileServer::requests(std::string_view path) const {
  std::lock_guard lock(mutex_);
  std::vector<TargetRequest> out;
  for (const auto& r : requests_) {
    if (path.empty() || r.path == path) out.push_back(r);
  }
  return out;
}

std::size_t FileServer::count(std::string_view path) const {
  return requests(path).size();
}

void FileServer::release() {
  {
    std::lock_guard lock(mutex_);
    released_ = true;
  }
  release_cv_.notify_all();
}

void FileServer::stop() {
  if (stopping_.exchange(true)) return;
  release_cv_.notify_all();
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (const int fd : open_fds_)
      ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_)
    t.join();
}

void FileServer::accept_loop() {
  while (!stopping_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    ++connections_;
    std::lock_guard lock(mutex_);
    open_fds_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void FileServer::send_body(int fd, std::string_view body, std::optional<std::size_t> cut,
                           std::optional<std::size_t> stall) {
  const std::size_t limit = cut ? std::min(*cut, body.size()) : body.size();
  std::size_t sent = 0;
  while (sent < limit) {
    if (stall && sent == *stall) {
      std::unique_lock lock(mutex_);
      stalled_ = true;
      release_cv_.wait(lock, [this] { return released_ || stopping_; });
      stalled_ = false;
      if (stopping_) return;
    }
    std::size_t chunk = std::min<std::size_t>(64 * 1024, limit - sent);
    if (stall && sent < *stall) chunk = std::min(chunk, *stall - sent);
    if (!send_all(fd, body.substr(sent, chunk))) return;
    sent += chunk;
  }
}

void FileServer::send_dribbled(int fd, std::string_view body, std::size_t bytes,
                               std::chrono::milliseconds every) {
  ++dribbling_;
  for (std::size_t sent = 0; sent < body.size() && !stopping_; sent += bytes) {
    if (!send_all(fd, body.substr(sent, bytes))) break;
    std::unique_lock lock(mutex_);
    release_cv_.wait_for(lock, every, [this] { return stopping_.load(); });
  }
  --dribbling_;
}

void FileServer::serve(int fd) {
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string head;
  char buffer[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    head.append(buffer, static_cast<std::size_t>(n));
  }
  TargetRequest request;
  std::istringstream lines(head.substr(0, head.find("\r\n\r\n")));
  std::string line;
  std::getline(lines, line);
  {
    std::istringstream first(line);
    first >> request.method >> request.target;
  }
  request.path = request.target.substr(0, request.target.find('?'));
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    request.headers.emplace_back(line.substr(0, colon), value);
  }
  request.arrived = Clock::now();
  request.arrived_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();

  int status = 404;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body = "not found";
  std::optional<std::size_t> cut, stall;
  std::optional<std::chrono::milliseconds> dribble_every;
  std::size_t dribble_bytes = 0;
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(request);
    const auto it = resources_.find(request.path);
    if (it != resources_.end()) {
      Resource& r = it->second;
      const auto authorization = request.header("authorization");
      const std::size_t earlier = static_cast<std::size_t>(
          std::count_if(requests_.begin(), requests_.end() - 1, [&](const TargetRequest& q) {
            return q.path == request.path &&
                   (!r.bearer || q.header("authorization") == "Bearer " + *r.bearer);
          }));
      const bool checked =
          !r.bearer_check || (authorization && authorization->starts_with("Bearer ") &&
                              r.bearer_check(std::string_view(*authorization).substr(7)));
      if ((r.bearer && authorization != "Bearer " + *r.bearer) || !checked) {
        status = 401;
        headers.emplace_back("WWW-Authenticate", "Bearer");
        body = R"({"error":"unauthorized"})";
      } else if (!r.redirect_to.empty()) {
        status = 302;
        headers.emplace_back("Location", r.redirect_to);
        body.clear();
      } else if (earlier < r.statuses.size()) {
        status = r.statuses[earlier];
        if (r.retry_after_s) headers.emplace_back("Retry-After", std::to_string(*r.retry_after_s));
        body = "try again later";
      } else {
        status = 200;
        body = r.body;
        const std::string etag = "\"" + std::to_string(std::hash<std::string>{}(r.body)) + "\"";
        if (r.ranges) {
          headers.emplace_back("Accept-Ranges", "bytes");
          headers.emplace_back("ETag", etag);
        }
        if (!r.content_encoding.empty())
          headers.emplace_back("Content-Encoding", r.content_encoding);
        headers.emplace_back("Content-Type", "application/fhir+ndjson");
        const auto range = request.header("range");
        const auto if_range = request.header("if-range");
        if (r.ranges && !r.ignores_range && range && range->starts_with("bytes=") &&
            range->back() == '-' && (!if_range || *if_range == etag)) {
          const std::size_t from = std::stoull(range->substr(6, range->size() - 7));
          if (from >= r.body.size()) {
            status = 416;
            headers.emplace_back("Content-Range", "bytes */" + std::to_string(r.body.size()));
            body.clear();
          } else {
            status = 206;
            headers.emplace_back("Content-Range", "bytes " + std::to_string(from) + "-" +
                                                      std::to_string(r.body.size() - 1) + "/" +
                                                      std::to_string(r.body.size()));
            body = r.body.substr(from);
          }
        }
        if (status == 200 || status == 206) {
          dribble_every = r.dribble_every;
          dribble_bytes = r.dribble_bytes;
          if (body_answers_[request.path]++ == 0) {
            cut = r.cut_at;
            stall = r.stall_at;
          }
        }
      }
    }
  }
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  for (const auto& [name, value] : headers)
    out += name + ": " + value + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (request.method != "HEAD" && send_all(fd, out)) {
    if (dribble_every) {
      send_dribbled(fd, body, dribble_bytes, *dribble_every);
    } else {
      send_body(fd, body, cut, stall);
    }
  }
  ::shutdown(fd, SHUT_RDWR);
  std::lock_guard lock(mutex_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  ::close(fd);
}

}  // namespace fbr::itest::download
