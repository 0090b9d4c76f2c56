// Starts a server command and measures the time from just before fork() until its first
// `GET /readyz` answered 200 on loopback (polled every 0.5 ms), then stops it with SIGTERM.
//
//   start_to_ready --port P [--timeout-ms 10000] -- COMMAND ARGS...
//
// Prints the milliseconds (one number) on standard output; exit 1 if it never became ready.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t stop_requested = 0;
void request_stop(int) {
  stop_requested = 1;
}

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "start_to_ready: %s\n", message.c_str());
  std::exit(1);
}

/// One GET /readyz; true when it answered 200. Any failure (not listening yet, 503) is false.
bool ready(const sockaddr_in& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket: " + std::string(strerror(errno)));
  bool ok = false;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
    const std::string_view request =
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char answer[16] = {};
      std::size_t got = 0;
      while (got < 12) {
        const ssize_t n = ::recv(fd, answer + got, 12 - got, 0);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      ok = got == 12 && std::string_view(answer, 12) == "HTTP/1.1 200";
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  long timeout_ms = 10000;
  int command = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      command = i + 1;
      break;
    }
    if (i + 1 >= argc) fail("missing value after " + std::string(arg));
    if (arg == "--port") {
      port = std::atoi(argv[++i]);
    } else if (arg == "--timeout-ms") {
      timeout_ms = std::atol(argv[++i]);
    } else {
      fail("unknown option " + std::string(arg));
    }
  }
  if (port <= 0 || port > 65535 || command == 0 || command >= argc) {
    fail("usage: start_to_ready --port P [--timeout-ms N] -- COMMAND ARGS...");
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  // Stopped itself (the bench was interrupted): stop the server too, rather than orphan it.
  std::signal(SIGTERM, request_stop);
  std::signal(SIGINT, request_stop);
  const auto started = Clock::now();
  const pid_t child = ::fork();
  if (child < 0) fail("fork: " + std::string(strerror(errno)));
  if (child == 0) {
    ::execvp(argv[command], argv + command);
    std::fprintf(stderr, "start_to_ready: exec %s: %s\n", argv[command], strerror(errno));
    std::_Exit(127);
  }
  const auto deadline = started + std::chrono::milliseconds(timeout_ms);
  bool became_ready = false;
  double elapsed_ms = 0;
  while (Clock::now() < deadline && stop_requested == 0) {
    if (ready(address)) {
      elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
      became_ready = true;
      break;
    }
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) fail("the server exited before it was ready");
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ::kill(child, SIGTERM);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (stop_requested != 0) fail("stopped by a signal");
  if (!became_ready) fail("not ready within " + std::to_string(timeout_ms) + " ms");
  std::printf("%.1f\n", elapsed_ms);
  return 0;
}
