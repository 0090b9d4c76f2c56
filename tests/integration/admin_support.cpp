#include "tests/integration/admin_support.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <thread>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/nats_support.hpp"

namespace fbr::itest::admin {
namespace {

std::string json_text(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string admin_member(const ConsoleOptions& options) {
  std::string tokens;
  for (const auto& t : options.admin_tokens)
    tokens += (tokens.empty() ? "" : ", ") + json_text(t);
  return R"("admin": {"listen": "127.0.0.1:0", "tokens": [)" + tokens + "]" +
         (options.admin_members.empty() ? "" : ", " + options.admin_members) + "}";
}

/// The config members a backend needs: none for sqlite, the test's own nats-server for nats.
std::string backend_members(std::string_view backend, const NatsCluster* nats) {
  if (backend == "sqlite") return {};
  if (backend == "nats" && nats != nullptr) {
    return R"("journal": {"backend": "nats", "nats": {"servers": )" + nats->servers_json() + "}}";
  }
  throw std::invalid_argument("no admin test set-up for backend " + std::string(backend));
}

ServerConfig server_config(const std::string& backend, const ConsoleOptions& options,
                           const NatsCluster* nats) {
  ServerConfig config;
  config.invalid_payloads = options.invalid_payloads;
  std::string members = admin_member(options);
  for (const std::string& more :
       {backend_members(backend, nats), options.handlers, options.extra_members}) {
    if (!more.empty()) members += ",\n  " + more;
  }
  config.extra_members = members;
  return config;
}

}  // namespace

unsigned short admin_port_of(const Server& server) {
  for (const auto& line : server.log_lines()) {
    if (line.find("listening") == std::string::npos) continue;
    const auto at = line.find(" admin=");
    if (at == std::string::npos) continue;
    const auto end = line.find(' ', at + 1);
    const std::string where = line.substr(at + 7, end == std::string::npos ? end : end - at - 7);
    return static_cast<unsigned short>(std::stoi(where.substr(where.rfind(':') + 1)));
  }
  throw std::runtime_error("no admin= in the listening line:\n" + server.log_tail());
}

Console::Console(const std::string& backend, ConsoleOptions options)
    : nats_(backend == "nats" ? std::make_unique<NatsCluster>(1) : nullptr),
      server_(std::make_unique<Server>(dir_, server_config(backend, options, nats_.get()))),
      admin_port_(admin_port_of(*server_)) {
  // The NATS journal connects after the start: the first POST waits until it can commit.
  if (nats_) {
    REQUIRE_MESSAGE(
        dispatch::poll_until(
            [&] { return http(server_->port(), itest::get("/readyz"), 2s).status == 200; }, 15s),
        server_->log());
  }
}

Console::~Console() {
  server_.reset();  // the receiver first: its journal must not vanish under it
}

std::string Console::origin() const {
  return "http://127.0.0.1:" + std::to_string(admin_port_);
}

HttpResponse Console::get(const std::string& target, std::string_view token) const {
  HttpRequest request = itest::get(target);
  if (!token.empty()) request.headers.emplace_back("Authorization", "Bearer " + std::string(token));
  return http(admin_port_, request, 10s);
}

HttpResponse Console::post(const std::string& target, std::string body, std::string_view token,
                           std::vector<std::pair<std::string, std::string>> headers) const {
  HttpRequest request;
  request.method = "POST";
  request.target = target;
  request.body = std::move(body);
  request.headers = std::move(headers);
  if (!request.body.empty()) request.headers.emplace_back("Content-Type", "application/json");
  if (!token.empty()) request.headers.emplace_back("Authorization", "Bearer " + std::string(token));
  return http(admin_port_, request, 10s);
}

rapidjson::Document Console::get_json(const std::string& target) const {
  const HttpResponse response = get(target);
  INFO(target << " -> " << response.status << " " << response.body);
  REQUIRE(response.status == 200);
  return parse_json(response.body);
}

void Console::post_event_ok(const std::string& body) const {
  const HttpResponse response = http(server_->port(), itest::post_event(body));
  INFO(response.body);
  REQUIRE(response.status == 200);
}

bool Console::console_built() const {
  const HttpResponse response = get("/api/events?limit=1");
  return !(response.status == 503 &&
           response.body.find("not implemented yet") != std::string::npos);
}

bool skip_without_console(const Console& console) {
  if (console.console_built()) return false;
  fbr::test::skip_test("this backend's console (ConsoleStore) is not built yet");
  return true;
}

EventStream::EventStream(unsigned short port, std::string_view token,
                         std::vector<std::pair<std::string, std::string>> headers) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd_);
    throw std::runtime_error("connect to the admin listener failed");
  }
  std::string request =
      "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + std::string(token) + "\r\n";
  for (const auto& [name, value] : headers)
    request += name + ": " + value + "\r\n";
  request += "Accept: text/event-stream\r\n\r\n";
  if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    throw std::runtime_error("sending the stream request failed");
  }
}

EventStream::~EventStream() {
  if (fd_ >= 0) ::close(fd_);
}

bool EventStream::read_some(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char buffer[16384];
  const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
  if (n <= 0) return false;
  received_.append(buffer, static_cast<std::size_t>(n));
  return true;
}

std::string EventStream::status_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (received_.find("\r\n\r\n") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    read_some(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()));
  }
  return received_.substr(0, received_.find("\r\n"));
}

bool EventStream::wait_for_text(std::string_view needle, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (received_.find(needle) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    read_some(left);
  }
  return true;
}

std::optional<std::string> EventStream::wait_for(std::string_view type, std::string_view needle,
                                                 std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string head = "event: " + std::string(type) + "\ndata: ";
  for (;;) {
    // Complete messages only (they end with a blank line).
    for (auto at = received_.find(head, scanned_); at != std::string::npos;
         at = received_.find(head, at + 1)) {
      const auto end = received_.find("\n\n", at + head.size());
      if (end == std::string::npos) break;
      const std::string data = received_.substr(at + head.size(), end - at - head.size());
      if (data.find(needle) != std::string::npos) return data;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    read_some(left);
  }
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

long resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace fbr::itest::admin

namespace fbr::itest::admin {

std::string event_body(const std::string& log_id, bool test, int status,
                       const std::string& attempt_id) {
  const auto replace = [](std::string& body, std::string_view from, std::string_view to) {
    const auto at = body.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, "the fixture lacks " << from);
    body.replace(at, from.size(), to);
  };
  std::string body = fixture(status == 202 ? "in-progress.json" : "complete.json");
  replace(body,
          status == 202 ? "0b6c1d52-3f2a-4f57-9a43-5d0f1c6a9e11"
                        : "d9f5d293-7110-461e-a875-3beb089e79f3",
          log_id);
  if (!test) replace(body, "\"Test\": true", "\"Test\": false");
  if (!attempt_id.empty()) {
    replace(body,
            status == 202 ? "6a1f0c8e-2b7d-4c3e-8f9a-1d2e3f4a5b6c"
                          : "925d1617-2fe0-468c-a14c-f8c04b572c54",
            attempt_id);
  }
  return body;
}

}  // namespace fbr::itest::admin
