#include "tests/integration/dispatch_support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fbr::itest::dispatch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// How long a blocked accept/read waits before looking at the stop flag again.
constexpr int kStopCheckMs = 50;

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<DeliveryInfo> to_infos(const std::vector<Journal::Row>& rows) {
  std::vector<DeliveryInfo> out;
  for (const auto& row : rows) {
    DeliveryInfo info;
    info.handler = row.at(0).value_or("");
    info.state = row.at(1).value_or("");
    info.attempts = std::stoi(row.at(2).value_or("0"));
    info.next_attempt_at = std::stoll(row.at(3).value_or("0"));
    info.last_error = row.at(4).value_or("");
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::optional<std::string> TargetRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequal(key, name)) return value;
  }
  return std::nullopt;
}

HttpTarget::HttpTarget() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(listen_fd_);
    throw std::runtime_error("bind/listen 127.0.0.1:0: " + why);
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

HttpTarget::~HttpTarget() {
  stop();
}

std::string HttpTarget::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

void HttpTarget::set_status(const std::string& path, int status, std::optional<int> retry_after_s) {
  const std::lock_guard lock(mutex_);
  answers_[path] = Answer{status, retry_after_s};
}

void HttpTarget::set_delay(std::chrono::milliseconds delay) {
  const std::lock_guard lock(mutex_);
  delay_ = delay;
}

std::size_t HttpTarget::count(std::string_view path) const {
  const std::lock_guard lock(mutex_);
  if (path.empty()) return requests_.size();
  return static_cast<std::size_t>(
      std::ranges::count_if(requests_, [&](const TargetRequest& r) { return r.path == path; }));
}

std::vector<TargetRequest> HttpTarget::requests(std::string_view path) const {
  const std::lock_guard lock(mutex_);
  std::vector<TargetRequest> out;
  for (const auto& r : requests_) {
    if (path.empty() || r.path == path) out.push_back(r);
  }
  return out;
}

void HttpTarget::stop() {
  {
    const std::lock_guard lock(mutex_);
    if (stopping_.exchange(true)) return;
  }
  stop_cv_.notify_all();
  if (acceptor_.joinable()) acceptor_.join();
  // The acceptor is gone: nobody adds threads any more.
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void HttpTarget::accept_loop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, kStopCheckMs);
    if (r <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++connections_accepted_;
    const std::lock_guard lock(mutex_);
    threads_.emplace_back([this, fd] {
      serve(fd);
      ::close(fd);
    });
  }
}

bool HttpTarget::read_more(int fd, std::string& buffer) const {
  char chunk[16 * 1024];
  while (!stopping_) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, kStopCheckMs);
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) continue;
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    return false;  // EOF or error
  }
  return false;
}

void HttpTarget::serve(int fd) {
  std::string buffer;
  for (;;) {
    // ---- header
    std::size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!read_more(fd, buffer)) return;
    }
    TargetRequest request;
    {
      std::istringstream head(buffer.substr(0, header_end));
      std::string line;
      std::getline(head, line);
      std::istringstream request_line(trim(line));
      std::string version;
      request_line >> request.method >> request.target >> version;
      request.path = request.target.substr(0, request.target.find('?'));
      while (std::getline(head, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        request.headers.emplace_back(trim(std::string_view(line).substr(0, colon)),
                                     trim(std::string_view(line).substr(colon + 1)));
      }
    }
    buffer.erase(0, header_end + 4);
    if (auto expect = request.header("Expect"); expect && lower(*expect) == "100-continue") {
      if (!send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return;
    }
    // ---- body
    const auto te = request.header("Transfer-Encoding");
    if (te && lower(*te).find("chunked") != std::string::npos) {
      for (;;) {
        std::size_t eol;
        while ((eol = buffer.find("\r\n")) == std::string::npos) {
          if (!read_more(fd, buffer)) return;
        }
        const std::size_t size = std::stoul(buffer.substr(0, eol), nullptr, 16);
        buffer.erase(0, eol + 2);
        if (size == 0) {
          // Trailers (if any) end with an empty line.
          while ((eol = buffer.find("\r\n")) != 0) {
            if (eol == std::string::npos) {
              if (!read_more(fd, buffer)) return;
              continue;
            }
            buffer.erase(0, eol + 2);
          }
          buffer.erase(0, 2);
          break;
        }
        while (buffer.size() < size + 2) {
          if (!read_more(fd, buffer)) return;
        }
        request.body.append(buffer, 0, size);
        buffer.erase(0, size + 2);
      }
    } else if (auto length = request.header("Content-Length")) {
      const std::size_t size = std::stoul(*length);
      while (buffer.size() < size) {
        if (!read_more(fd, buffer)) return;
      }
      request.body = buffer.substr(0, size);
      buffer.erase(0, size);
    }
    request.arrived = Clock::now();
    request.arrived_unix_ms = unix_ms();
    const bool close_after = [&] {
      auto c = request.header("Connection");
      return c && lower(*c) == "close";
    }();

    // ---- record, wait, answer
    Answer answer;
    std::chrono::milliseconds delay{0};
    {
      const std::lock_guard lock(mutex_);
      if (auto it = answers_.find(request.path); it != answers_.end()) answer = it->second;
      delay = delay_;
      requests_.push_back(request);
    }
    const int now_in_flight = ++in_flight_;
    int seen = max_in_flight_;
    while (now_in_flight > seen && !max_in_flight_.compare_exchange_weak(seen, now_in_flight)) {
    }
    if (delay.count() > 0) {
      std::unique_lock lock(mutex_);
      stop_cv_.wait_for(lock, delay, [this] { return stopping_.load(); });
    }
    if (stopping_) {
      --in_flight_;
      return;  // closes the connection without an answer
    }
    const std::string body = "status " + std::to_string(answer.status) + "\n";
    std::string response = "HTTP/1.1 " + std::to_string(answer.status) + " " +
                           reason(answer.status) + "\r\nContent-Type: text/plain\r\n" +
                           "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (answer.retry_after_s)
      response += "Retry-After: " + std::to_string(*answer.retry_after_s) + "\r\n";
    if (close_after) response += "Connection: close\r\n";
    response += "\r\n" + body;
    const bool sent = send_all(fd, response);
    --in_flight_;
    if (!sent || close_after) return;
  }
}

// ---------------------------------------------------------------------------------------------

bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

// ---------------------------------------------------------------------------------------------

std::vector<DeliveryInfo> deliveries_of(const Server& server, std::string_view log_id) {
  std::error_code ec;
  if (!fs::exists(server.journal_path(), ec)) return {};
  const Journal journal(server.journal_path());
  return to_infos(
      journal.query("SELECT d.handler, d.state, d.attempts, d.next_attempt_at, d.last_error "
                    "FROM deliveries d JOIN events e ON e.key = d.event_key WHERE e.log_id = ? "
                    "ORDER BY d.handler",
                    {std::string(log_id)}));
}

std::optional<DeliveryInfo> delivery_of(const Server& server, std::string_view log_id,
                                        std::string_view handler) {
  for (auto& d : deliveries_of(server, log_id)) {
    if (d.handler == handler) return d;
  }
  return std::nullopt;
}

std::string describe_deliveries(const Server& server) {
  std::error_code ec;
  if (!fs::exists(server.journal_path(), ec)) return "(no journal)\n";
  const Journal journal(server.journal_path());
  std::string out;
  for (const auto& row :
       journal.query("SELECT event_key, handler, state, attempts, next_attempt_at, last_error "
                     "FROM deliveries ORDER BY event_key, handler")) {
    for (const auto& cell : row)
      out += cell.value_or("NULL") + " | ";
    out += "\n";
  }
  return out.empty() ? "(no deliveries)\n" : out;
}

bool wait_for_state(const Server& server, std::string_view log_id, std::string_view handler,
                    std::string_view state, std::chrono::milliseconds timeout,
                    std::optional<DeliveryInfo>* last) {
  std::optional<DeliveryInfo> seen;
  const bool ok = poll_until(
      [&] {
        seen = delivery_of(server, log_id, handler);
        return seen && seen->state == state;
      },
      timeout);
  if (last != nullptr) *last = seen;
  return ok;
}

bool wait_all_done(const Server& server, long long expected, std::chrono::milliseconds timeout) {
  return poll_until(
      [&] {
        std::error_code ec;
        if (!fs::exists(server.journal_path(), ec)) return false;
        const Journal journal(server.journal_path());
        return journal.count("deliveries") == expected &&
               journal.count("deliveries", "state = 'done'") == expected;
      },
      timeout, std::chrono::milliseconds(50));
}

// ---------------------------------------------------------------------------------------------

std::vector<std::string> file_lines(const fs::path& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

std::vector<std::string> log_lines_with(const Server& server,
                                        const std::vector<std::string>& needles,
                                        std::size_t expected) {
  auto matching = [&] {
    std::vector<std::string> out;
    for (auto& line : server.log_lines()) {
      if (std::ranges::all_of(
              needles, [&](const std::string& n) { return line.find(n) != std::string::npos; })) {
        out.push_back(std::move(line));
      }
    }
    return out;
  };
  if (expected > 0) poll_until([&] { return matching().size() >= expected; }, 5s);
  return matching();
}

std::optional<std::string> log_field(std::string_view line, std::string_view key) {
  const std::string needle = " " + std::string(key) + "=";
  const auto at = line.find(needle);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(at + needle.size());
  if (!rest.empty() && rest.front() == '"') {
    rest.remove_prefix(1);
    std::string out;
    for (std::size_t i = 0; i < rest.size(); ++i) {
      if (rest[i] == '\\' && i + 1 < rest.size()) {
        out += rest[++i];
      } else if (rest[i] == '"') {
        break;
      } else {
        out += rest[i];
      }
    }
    return out;
  }
  return std::string(rest.substr(0, rest.find(' ')));
}

void write_script(const fs::path& file, std::string_view body) {
  write_file(file, "#!/bin/sh\n" + std::string(body) + "\n");
  fs::permissions(file, fs::perms::owner_all);
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0) return errno == EPERM;
  // It exists; a zombie (exited, not reaped yet by its new parent) is dead all the same.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const auto paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return true;
  return text[paren + 2] != 'Z' && text[paren + 2] != 'X';
}

std::vector<pid_t> live_processes_in_group(pid_t pgid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::ranges::all_of(name, [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    std::ifstream stat(entry.path() / "stat");
    std::string text;
    if (!std::getline(stat, text)) continue;
    const auto paren = text.rfind(')');
    if (paren == std::string::npos) continue;
    // After "comm)": state, ppid, pgrp, ...
    std::istringstream rest(text.substr(paren + 1));
    std::string state;
    long ppid = 0;
    long pgrp = 0;
    if (!(rest >> state >> ppid >> pgrp)) continue;
    if (pgrp == pgid && state != "Z" && state != "X")
      out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

std::string json_string(std::string_view value) {
  std::string out = "\"";
  for (const char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(c));
      out += esc;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

rapidjson::Document events_json(const Server& server) {
  const auto r = run_cli({"events", "--config", server.config_path().string(), "--json"});
  if (r.exit_code != 0) {
    throw std::runtime_error("events --json exited " + std::to_string(r.exit_code) + ": " +
                             r.output());
  }
  auto doc = parse_json(r.out);
  if (doc.HasParseError() || !doc.IsArray()) {
    throw std::runtime_error("events --json printed no JSON array: " + r.out);
  }
  return doc;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::ranges::sort(values);
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const std::size_t index =
      std::min(values.size() - 1, static_cast<std::size_t>(std::max(1.0, rank)) - 1);
  return values[index];
}

}  // namespace fbr::itest::dispatch
