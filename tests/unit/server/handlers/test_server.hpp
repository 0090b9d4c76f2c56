#pragma once
// A scripted HTTP server on loopback for the handlers' unit tests: a small blocking server in a
// thread; connection n gets reply n of the script (the last one repeated), one request per
// connection, every request recorded.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fbr::server::test {

struct Reply {
  int status = 200;
  std::string extra_headers;  // "Name: value\r\n"...
  std::string body;
  bool hang = false;  // read the request, never answer (until the client gives up)
};

struct Request {
  std::string request_line;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class TestServer {
 public:
  explicit TestServer(std::vector<Reply> script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TestServer() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);  // wakes accept()
    if (const int c = current_.load(); c >= 0) ::shutdown(c, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  [[nodiscard]] std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  void serve() {
    for (std::size_t i = 0; !stopping_; ++i) {
      const int conn = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) return;
      current_ = conn;
      if (stopping_) ::shutdown(conn, SHUT_RDWR);
      const Reply& reply = script_[std::min(i, script_.size() - 1)];
      if (read_request(conn)) {
        if (reply.hang) {
          char byte;
          while (::recv(conn, &byte, 1, 0) > 0) {
          }
        } else {
          std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " Scripted\r\n" +
                            "Content-Length: " + std::to_string(reply.body.size()) + "\r\n" +
                            "Connection: close\r\n" + reply.extra_headers + "\r\n" + reply.body;
          (void)::send(conn, out.data(), out.size(), MSG_NOSIGNAL);
        }
      }
      current_ = -1;
      ::close(conn);
    }
  }

  bool read_request(int conn) {
    std::string data;
    char buffer[4096];
    std::size_t header_end = std::string::npos;
    while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t n = ::recv(conn, buffer, sizeof buffer, 0);
      if (n <= 0) return false;
      data.append(buffer, static_cast<std::size_t>(n));
    }
    Request request;
    std::istringstream head(data.substr(0, header_end));
    std::getline(head, request.request_line);
    if (!request.request_line.empty() && request.request_line.back() == '\r') {
      request.request_line.pop_back();
    }
    for (std::string line; std::getline(head, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      request.headers[name] = value;
    }
    const std::size_t length = request.headers.contains("content-length")
                                   ? std::stoul(request.headers["content-length"])
                                   : 0;
    request.body = data.substr(header_end + 4);
    while (request.body.size() < length) {
      const ssize_t n = ::recv(conn, buffer, sizeof buffer, 0);
      if (n <= 0) return false;
      request.body.append(buffer, static_cast<std::size_t>(n));
    }
    std::lock_guard lock(mutex_);
    requests_.push_back(std::move(request));
    return true;
  }

  std::vector<Reply> script_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> current_{-1};
  std::mutex mutex_;
  std::vector<Request> requests_;
  std::thread thread_;
};

}  // namespace fbr::server::test
