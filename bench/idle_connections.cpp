// Opens N keep-alive connections to a server on loopback, makes one request on each (so each is
// an idle keep-alive connection after a served request, as a real client leaves it), then holds
// them open until SIGTERM/SIGINT or --hold-seconds, so the caller can read the server's memory.
//
//   idle_connections --port P [--host 127.0.0.1] [--count 10000] [--path /healthz]
//                    [--hold-seconds 120]
//
// Prints "ready N" on standard output once all N connections have been answered.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::size_t count = 10000;
  std::string path = "/healthz";
  long hold_seconds = 120;
};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "idle_connections: %s\n", message.c_str());
  std::exit(1);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) fail("missing value after " + std::string(arg));
    const char* value = argv[++i];
    if (arg == "--host") {
      o.host = value;
    } else if (arg == "--port") {
      o.port = std::atoi(value);
    } else if (arg == "--count") {
      o.count = std::strtoul(value, nullptr, 10);
    } else if (arg == "--path") {
      o.path = value;
    } else if (arg == "--hold-seconds") {
      o.hold_seconds = std::atol(value);
    } else {
      fail("unknown option " + std::string(arg));
    }
  }
  if (o.port <= 0 || o.port > 65535) fail("--port is required");
  return o;
}

/// Raises the soft descriptor limit to the hard one; fails if N connections cannot fit.
void raise_fd_limit(std::size_t needed) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) fail("getrlimit: " + std::string(strerror(errno)));
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) fail("setrlimit: " + std::string(strerror(errno)));
  if (limit.rlim_cur < needed) {
    fail("the descriptor limit is " + std::to_string(limit.rlim_cur) + ", " +
         std::to_string(needed) + " are needed");
  }
}

int open_connection(const sockaddr_in& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket: " + std::string(strerror(errno)));
  const timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    fail("connect: " + std::string(strerror(errno)));
  }
  return fd;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) fail("send: " + std::string(strerror(errno)));
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::size_t content_length(std::string_view head) {
  std::string lower(head);
  for (auto& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto at = lower.find("\r\ncontent-length:");
  if (at == std::string::npos) return 0;
  return std::strtoul(lower.c_str() + at + 17, nullptr, 10);
}

/// Reads one whole response (header and Content-Length body) and checks that it is a 200.
void read_response(int fd) {
  std::string data;
  char chunk[4096];
  for (;;) {
    const auto end = data.find("\r\n\r\n");
    if (end != std::string::npos && data.size() >= end + 4 + content_length(data.substr(0, end))) {
      break;
    }
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) fail("recv: " + std::string(n == 0 ? "closed by the server" : strerror(errno)));
    data.append(chunk, static_cast<std::size_t>(n));
  }
  if (data.compare(0, 12, "HTTP/1.1 200") != 0) {
    fail("unexpected answer: " + data.substr(0, data.find("\r\n")));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  raise_fd_limit(options.count + 16);

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(options.port));
  if (::inet_pton(AF_INET, options.host.c_str(), &address.sin_addr) != 1) {
    fail("bad host " + options.host);
  }
  const std::string request =
      "GET " + options.path + " HTTP/1.1\r\nHost: " + options.host + "\r\n\r\n";

  // In batches well under the listen backlog: connect and send a batch, then read its answers.
  constexpr std::size_t kBatch = 256;
  std::vector<int> fds;
  fds.reserve(options.count);
  while (fds.size() < options.count) {
    const std::size_t first = fds.size();
    const std::size_t last = std::min(options.count, first + kBatch);
    for (std::size_t i = first; i < last; ++i) {
      fds.push_back(open_connection(address));
      send_all(fds.back(), request);
    }
    for (std::size_t i = first; i < last; ++i)
      read_response(fds[i]);
  }
  std::printf("ready %zu\n", fds.size());
  std::fflush(stdout);

  const timespec hold{options.hold_seconds, 0};
  (void)sigtimedwait(&stop_signals, nullptr, &hold);
  for (int fd : fds)
    ::close(fd);
  return 0;
}
