// The HTTP edge against hostile clients: authentication at the header (401 before any body byte
// is kept, no 100 Continue without a valid token), memory that follows the bytes received, HEAD,
// nosniff, the challenge rules, and accept() out of descriptors.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardening_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using namespace fbr::itest::hardening;

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kAnnounced = 41943040;  // 40 MiB: max_body_bytes, the default

/// A field of /proc/<pid>/status in kB (VmHWM, VmRSS), or -1.
long status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

/// utime + stime of the process, in clock ticks, from /proc/<pid>/stat.
long cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::vector<std::string> f;
  for (std::string word; fields >> word;)
    f.push_back(word);
  // After "pid (comm) ": state is field 3, utime 14, stime 15.
  REQUIRE(f.size() > 13);
  return std::stol(f[11]) + std::stol(f[12]);
}

std::string post_header(const std::string& extra_headers, std::size_t content_length) {
  return "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
         extra_headers + "Content-Length: " + std::to_string(content_length) + "\r\n\r\n";
}

/// The status line and headers of the first response in `raw` (up to the blank line), or empty.
std::string first_head(const std::string& raw) {
  const auto end = raw.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : raw.substr(0, end + 4);
}

/// Reads from `fd` until `raw` holds a whole response head or the deadline passes.
std::string read_head(int fd, std::chrono::milliseconds timeout) {
  std::string raw;
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  while (first_head(raw).empty() && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    raw.append(buffer, static_cast<std::size_t>(n));
  }
  return raw;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    REQUIRE_MESSAGE(n > 0, "send: ", std::strerror(errno));
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// What one hostile connection of many saw.
struct Flood {
  int fd = -1;
  std::string header;
  std::string_view payload;  ///< sent after the header (shared by all)
  std::size_t sent = 0;      ///< of header + payload
  std::size_t total() const { return header.size() + payload.size(); }
  std::string received;
  bool closed = false;
};

/// Sends each connection its bytes while reading, all at once (non-blocking, one poll loop),
/// until every one was closed by the server or the deadline passed.
void run_flood(std::vector<Flood>& floods, std::chrono::milliseconds timeout) {
  for (auto& f : floods)
    ::fcntl(f.fd, F_SETFL, ::fcntl(f.fd, F_GETFL) | O_NONBLOCK);
  const auto deadline = Clock::now() + timeout;
  char buffer[65536];
  while (Clock::now() < deadline) {
    std::vector<pollfd> polls;
    std::vector<Flood*> owners;
    for (auto& f : floods) {
      if (f.closed) continue;
      polls.push_back({f.fd, static_cast<short>(POLLIN | (f.sent < f.total() ? POLLOUT : 0)), 0});
      owners.push_back(&f);
    }
    if (polls.empty()) return;
    if (::poll(polls.data(), polls.size(), 100) <= 0) continue;
    for (std::size_t i = 0; i < polls.size(); ++i) {
      Flood& f = *owners[i];
      if (polls[i].revents & POLLOUT) {
        const std::string_view next = f.sent < f.header.size()
                                          ? std::string_view(f.header).substr(f.sent)
                                          : f.payload.substr(f.sent - f.header.size());
        const ssize_t n = ::send(f.fd, next.data(), next.size(), MSG_NOSIGNAL);
        if (n > 0) {
          f.sent += static_cast<std::size_t>(n);
        } else if (errno != EAGAIN) {
          f.sent = f.total();  // the server closed: stop writing, keep reading
        }
      }
      if (polls[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::recv(f.fd, buffer, sizeof buffer, 0);
        if (n > 0) {
          f.received.append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EAGAIN) {
          f.closed = true;
        }
      }
    }
  }
}

std::string header_value(const std::string& head, const std::string& name) {
  std::istringstream lines(head);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > name.size() + 1 &&
        strncasecmp(line.c_str(), name.c_str(), name.size()) == 0 && line[name.size()] == ':') {
      std::string value = line.substr(name.size() + 1);
      while (!value.empty() && (value.front() == ' '))
        value.erase(0, 1);
      while (!value.empty() && (value.back() == '\r' || value.back() == ' '))
        value.pop_back();
      return value;
    }
  }
  return "<absent>";
}

}  // namespace

TEST_CASE(
    "edge: 200 tokenless connections announcing 40 MiB each get 401 and are closed - peak memory "
    "grows by less than 32 MiB") {
  raise_nofile_limit(4096);
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  REQUIRE(http(server.port(), get("/healthz")).status == 200);
  const long before = status_kib(server.pid(), "VmHWM");
  REQUIRE(before > 0);

  constexpr std::size_t kConnections = 200;
  const std::string payload(std::size_t{3} << 20, 'x');  // 3 MiB of the announced 40 sent
  std::vector<Flood> floods(kConnections);
  Sockets sockets;
  for (auto& f : floods) {
    f.fd = connect_loopback(server.port());
    sockets.add(f.fd);
    f.header = post_header("", kAnnounced);
    f.payload = payload;
  }
  run_flood(floods, 60s);

  std::size_t unauthorized = 0;
  std::size_t closed = 0;
  for (const auto& f : floods) {
    const auto responses = parse_responses(f.received, true);
    if (responses.size() == 1 && responses[0].status == 401) ++unauthorized;
    if (f.closed) ++closed;
  }
  CHECK(unauthorized == kConnections);
  CHECK(closed == kConnections);
  const long after = status_kib(server.pid(), "VmHWM");
  MESSAGE("VmHWM before ", before, " kB, after ", after, " kB");
  CHECK(after - before < 32 * 1024);
  CHECK(journal_count(server, "events") == 0);
  CHECK(http(server.port(), get("/healthz")).status == 200);
}

TEST_CASE("edge: a verification challenge without a header token still works, within the limit") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());

  HttpRequest post;
  post.headers = {{"Content-Type", "application/json"}};
  post.body = R"({"verification-token":"test-token","challenge":"c-body-1"})";
  const auto echoed = http(server.port(), post);
  CHECK(echoed.status == 200);
  CHECK(echoed.body == "c-body-1");

  const auto get_form =
      http(server.port(), get("/webhook?challenge=c-get-2&verification-token=test-token"));
  CHECK(get_form.status == 200);
  CHECK(get_form.body == "c-get-2");

  SUBCASE("a tokenless challenge body over limits.max_unauthenticated_body_bytes gets 401") {
    HttpRequest big = post;
    big.body = R"({"verification-token":"test-token","challenge":"c-3","pad":")" +
               std::string(4096, 'p') + R"("})";
    const auto ex = raw_exchange(server.port(), serialize(big), 1, true, 10s);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "received: ", ex.received.substr(0, 300));
    CHECK(ex.responses[0].status == 401);
    CHECK(ex.closed);
  }
  SUBCASE("the same sent chunked is cut at the limit with 401") {
    HttpRequest big = post;
    big.chunked = true;
    big.body = R"({"verification-token":"test-token","challenge":"c-4","pad":")" +
               std::string(1 << 20, 'p') + R"("})";
    const auto ex = raw_exchange(server.port(), serialize(big), 1, true, 10s);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "received: ", ex.received.substr(0, 300));
    CHECK(ex.responses[0].status == 401);
    CHECK(ex.closed);
  }
  SUBCASE("a setting of 8192 admits a 5 KB tokenless challenge") {
    server.terminate();
    TempDir wider;
    ServerConfig config;
    config.extra_members = R"("limits": {"max_unauthenticated_body_bytes": 8192})";
    Server larger(wider, config);
    HttpRequest padded = post;
    padded.body = R"({"verification-token":"test-token","challenge":"c-5","pad":")" +
                  std::string(5000, 'p') + R"("})";
    const auto answer = http(larger.port(), padded);
    CHECK(answer.status == 200);
    CHECK(answer.body == "c-5");
  }
}

TEST_CASE("edge: a wrong header token with a 40 MiB announced body gets 401 before any body byte") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  for (const std::string token_header :
       {"verification-token: wrong\r\n", "Authorization: Bearer wrong\r\n"}) {
    CAPTURE(token_header);
    // Only the header is sent: the answer must come without the body.
    const auto ex = raw_exchange(server.port(), post_header(token_header, kAnnounced), 1, true, 5s);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "received: ", ex.received.substr(0, 300));
    CHECK(ex.responses[0].status == 401);
    CHECK(ex.closed);
  }
  CHECK(server.wait_for_line({"unauthorized", "reason=\"wrong token\""}).has_value());
}

TEST_CASE(
    "edge: Expect 100-continue - a wrong or missing token gets 401 not 100, a valid one 100 "
    "then 200") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  const std::string expect = "Expect: 100-continue\r\n";

  // A wrong token with a small body, no token with a large one: 401 where 100 would be.
  for (const auto& header : {post_header(expect + "verification-token: wrong\r\n", 1000),
                             post_header(expect, kAnnounced)}) {
    CAPTURE(header);
    const int fd = connect_loopback(server.port());
    Sockets owner;
    owner.add(fd);
    send_all(fd, header);
    const std::string head = first_head(read_head(fd, 5s));
    CHECK_MESSAGE(head.rfind("HTTP/1.1 401", 0) == 0, "got: ", head);
  }
  SUBCASE("valid token") {
    const int fd = connect_loopback(server.port());
    Sockets owner;
    owner.add(fd);
    const std::string body = event_with_log_id(new_log_id());
    send_all(fd, post_header(expect + "verification-token: test-token\r\n", body.size()));
    const std::string interim = read_head(fd, 5s);
    CHECK_MESSAGE(interim.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0, "got: ", interim);
    send_all(fd, body);
    std::string rest = interim.substr(first_head(interim).size());
    if (first_head(rest).empty()) rest += read_head(fd, 5s);
    CHECK_MESSAGE(rest.rfind("HTTP/1.1 200", 0) == 0, "got: ", rest);
  }
}

TEST_CASE(
    "edge: HEAD then GET pipelined on one connection - two answers, the HEAD's without a "
    "body and with GET's Content-Length") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  for (const std::string path : {"/healthz", "/readyz", "/nowhere"}) {
    CAPTURE(path);
    const std::string request = "HEAD " + path + " HTTP/1.1\r\nHost: x\r\n\r\nGET " + path +
                                " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const int fd = connect_loopback(server.port());
    Sockets owner;
    owner.add(fd);
    send_all(fd, request);
    std::string received;
    REQUIRE(wait_closed(fd, 10s, &received));
    const std::string head = first_head(received);
    REQUIRE_MESSAGE(!head.empty(), "received: ", received);
    // The HEAD's answer ends at its blank line: the next byte begins the GET's answer.
    const std::string rest = received.substr(head.size());
    REQUIRE_MESSAGE(rest.rfind("HTTP/1.1 ", 0) == 0, "after the HEAD's header: ", rest);
    const auto get_answers = parse_responses(rest, true);
    REQUIRE(get_answers.size() == 1);
    CHECK(head.substr(0, 12) == rest.substr(0, 12));  // same status
    CHECK(header_value(head, "Content-Length") == std::to_string(get_answers[0].body.size()));
    CHECK(header_value(head, "Content-Type") == get_answers[0].header("Content-Type").value_or(""));
    CHECK(get_answers[0].body.size() > 0);
  }
}

TEST_CASE("edge: X-Content-Type-Options nosniff on 200 400 401 404 405 413 415 431 and 503") {
  TempDir dir;
  ServerConfig config;
  config.extra_members = R"("limits": {"max_connections": 2})";
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());

  auto with_token = [](HttpRequest r) {
    r.headers.emplace_back("verification-token", "test-token");
    return r;
  };
  HttpRequest put_request = with_token(get("/webhook"));
  put_request.method = "PUT";
  HttpRequest text = post_event(event_with_log_id(new_log_id()));
  text.headers = {{"Content-Type", "text/plain"}, {"verification-token", "test-token"}};
  const std::vector<std::pair<int, std::string>> cases = {
      {200, serialize(get("/healthz"))},
      {200, serialize(post_event(event_with_log_id(new_log_id())))},
      {400, serialize(post_event("{}"))},
      {400, serialize(with_token(get("/webhook?challenge=%01")))},
      {401, serialize(post_event(event_with_log_id(new_log_id()), "wrong"))},
      {401, serialize(get("/webhook?challenge=c&verification-token=wrong"))},
      {404, serialize(get("/nowhere"))},
      {405, serialize(put_request)},
      {413, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"},
      {415, serialize(text)},
      {431, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n"},
      {400, "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"},
  };
  for (const auto& [status, bytes] : cases) {
    CAPTURE(status);
    CAPTURE(bytes.substr(0, 80));
    const auto ex = raw_exchange(server.port(), bytes, 1, false, 10s);
    REQUIRE_MESSAGE(ex.responses.size() == 1, "received: ", ex.received.substr(0, 300));
    CHECK(ex.responses[0].status == status);
    CHECK(ex.responses[0].header("X-Content-Type-Options").value_or("<absent>") == "nosniff");
  }

  // 503: two connections held, the third is refused.
  Sockets held;
  held.add(connect_loopback(server.port()));
  held.add(connect_loopback(server.port()));
  std::optional<HttpResponse> refused;
  const auto deadline = Clock::now() + 5s;
  while (!refused && Clock::now() < deadline) {
    const auto ex = raw_exchange(server.port(), {}, 1, true, 5s);
    if (!ex.responses.empty() && ex.responses[0].status == 503) refused = ex.responses[0];
  }
  REQUIRE(refused.has_value());
  CHECK(refused->header("X-Content-Type-Options").value_or("<absent>") == "nosniff");
}

TEST_CASE("edge: a challenge is echoed only when 1 to 256 printable ASCII characters") {
  TempDir dir;
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  const std::string uuid = "2e73f864-a0e9-4764-a7d5-91fe5836db22";
  const auto ok =
      http(server.port(), get("/webhook?challenge=" + uuid + "&verification-token=test-token"));
  CHECK(ok.status == 200);
  CHECK(ok.body == uuid);
  const std::string longest(256, 'c');
  CHECK(http(server.port(), get("/webhook?challenge=" + longest + "&verification-token=test-token"))
            .body == longest);

  for (const std::string& bad : {std::string(257, 'c'), std::string("a%0D%0Ab"),
                                 std::string("%1B%5B2J"), std::string("caf%C3%A9")}) {
    CAPTURE(bad);
    const auto answer =
        http(server.port(), get("/webhook?challenge=" + bad + "&verification-token=test-token"));
    CHECK(answer.status == 400);
    CHECK(json_str(parse_json(answer.body), "/error") == "bad challenge");
  }
  // In a POST body too (the header token admits a large body; the echo stays bounded).
  auto post = post_event(R"({"challenge":")" + std::string(1000, 'c') + R"("})");
  const auto long_post = http(server.port(), post);
  CHECK(long_post.status == 400);
  CHECK(long_post.body.find(std::string(300, 'c')) == std::string::npos);
}

TEST_CASE(
    "edge: under ulimit -n 64, 200 held connection attempts cost under 10 % of a core and "
    "serving resumes once they close") {
  raise_nofile_limit(4096);
  TempDir dir;
  ServerConfig config;
  config.open_files_limit = 64;
  Server server(dir, config);
  INFO("server log tail:\n", server.log_tail());
  // Start-up says what it runs with (here the soft limit is already the hard one).
  CHECK(server.wait_for_line({"open_files_limit", "soft=64", "hard=64"}).has_value());
  REQUIRE(http(server.port(), get("/healthz")).status == 200);

  {
    Sockets attempts;
    for (int i = 0; i < 200; ++i)
      attempts.add(connect_loopback(server.port()));  // in the accept queue when not accepted
    REQUIRE(server.wait_for_log("accept_failed", 5s));
    std::this_thread::sleep_for(500ms);  // settle: the accepted ones have their sessions
    const long ticks_before = cpu_ticks(server.pid());
    const auto window_start = Clock::now();
    std::this_thread::sleep_for(3s);
    const long ticks = cpu_ticks(server.pid()) - ticks_before;
    const double seconds = std::chrono::duration<double>(Clock::now() - window_start).count();
    const double share =
        static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK)) / seconds;
    MESSAGE("CPU while out of descriptors: ", share * 100, " % of a core");
    CHECK(share < 0.10);
    // At most one line a second about it.
    CHECK(count_in_log(server, "accept_failed") <= 6);
  }

  // The attempts are closed: a normal POST gets its 200 again.
  const std::string id = new_log_id();
  std::optional<int> status;
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline) {
    try {
      status = http(server.port(), post_event(event_with_log_id(id)), 5s).status;
      if (*status == 200) break;
    } catch (const std::exception&) {  // refused or reset while it recovers: try again
    }
    std::this_thread::sleep_for(100ms);
  }
  CHECK(status == 200);
  CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);
}
