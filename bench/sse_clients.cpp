// Opens N Server-Sent Events streams to a server on loopback (GET PATH on each, its answer
// checked: 200 and text/event-stream), then reads them all — as the console page does — until
// SIGTERM/SIGINT or --hold-seconds, so the caller can read the server's memory, or measure the
// ingest while the streams consume what it publishes.
//
//   sse_clients --port P [--host 127.0.0.1] [--count 100] [--path /api/stream]
//               [--hold-seconds 600]
//
// Prints "ready N" on standard output once all N streams are open, and at the end
// "received EVENTS BYTES": the `event: event` messages and the bytes read over all streams.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::size_t count = 100;
  std::string path = "/api/stream";
  long hold_seconds = 600;
};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "sse_clients: %s\n", message.c_str());
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
  if (o.count == 0) fail("--count must be at least 1");
  return o;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// One open stream: its socket and the end of what it read (a message may straddle reads).
struct Stream {
  int fd = -1;
  std::string tail;
};

constexpr std::string_view kEventLine = "event: event\n";

/// Counts `event: event` lines in `data`, carrying the last bytes over to the next read.
std::uint64_t count_events(Stream& s, std::string_view data) {
  std::string text = s.tail;
  text.append(data);
  std::uint64_t n = 0;
  for (std::size_t at = text.find(kEventLine); at != std::string::npos;
       at = text.find(kEventLine, at + kEventLine.size())) {
    ++n;
  }
  const std::size_t keep = std::min(text.size(), kEventLine.size() - 1);
  s.tail = text.substr(text.size() - keep);
  return n;
}

/// Connects, sends the request and reads the answer's header: 200, text/event-stream.
Stream open_stream(const sockaddr_in& address, const std::string& request, std::uint64_t& events) {
  Stream s;
  s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s.fd < 0) fail("socket: " + std::string(strerror(errno)));
  const timeval timeout{10, 0};
  ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    fail("connect: " + std::string(strerror(errno)));
  }
  if (::send(s.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    fail("send: " + std::string(strerror(errno)));
  }
  std::string data;
  char chunk[4096];
  std::size_t end = std::string::npos;
  while ((end = data.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t n = ::recv(s.fd, chunk, sizeof chunk, 0);
    if (n <= 0) fail("recv: " + std::string(n == 0 ? "closed by the server" : strerror(errno)));
    data.append(chunk, static_cast<std::size_t>(n));
  }
  const std::string head = lower(data.substr(0, end));
  if (!head.starts_with("http/1.1 200"))
    fail("unexpected answer: " + data.substr(0, data.find('\r')));
  if (head.find("content-type: text/event-stream") == std::string::npos) {
    fail("the answer is not text/event-stream");
  }
  events += count_events(s, std::string_view(data).substr(end + 4));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
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
  const std::string request = "GET " + options.path + " HTTP/1.1\r\nHost: " + options.host + ":" +
                              std::to_string(options.port) +
                              "\r\nAccept: text/event-stream\r\n\r\n";
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;
  std::vector<Stream> streams;
  for (std::size_t i = 0; i < options.count; ++i)
    streams.push_back(open_stream(address, request, events));
  std::printf("ready %zu\n", streams.size());
  std::fflush(stdout);

  std::vector<pollfd> fds;
  for (const auto& s : streams)
    fds.push_back({s.fd, POLLIN, 0});
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(options.hold_seconds);
  char chunk[65536];
  std::size_t open = streams.size();
  while (open > 0 && std::chrono::steady_clock::now() < until) {
    // A stop signal is looked for between polls (it is blocked: sigtimedwait takes it).
    const timespec none{0, 0};
    if (sigtimedwait(&stop_signals, nullptr, &none) > 0) break;
    const int ready = ::poll(fds.data(), fds.size(), 200);
    if (ready < 0 && errno != EINTR) fail("poll: " + std::string(strerror(errno)));
    for (std::size_t i = 0; ready > 0 && i < fds.size(); ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t n = ::recv(fds[i].fd, chunk, sizeof chunk, 0);
      if (n <= 0) {
        std::fprintf(stderr, "sse_clients: stream %zu ended (%s)\n", i,
                     n == 0 ? "closed by the server" : strerror(errno));
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
        continue;
      }
      bytes += static_cast<std::uint64_t>(n);
      events += count_events(streams[i], std::string_view(chunk, static_cast<std::size_t>(n)));
    }
  }
  for (const auto& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  std::printf("received %llu %llu\n", static_cast<unsigned long long>(events),
              static_cast<unsigned long long>(bytes));
  return open == streams.size() ? 0 : 1;
}
