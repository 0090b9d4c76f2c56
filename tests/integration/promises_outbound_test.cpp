// README promises of the outbound handlers that had no test (issue 13): the http and download
// handlers verify TLS (a self-signed https server on 127.0.0.1 is refused with a certificate
// error; with its CA in the system trust store the same delivery works), and they take their
// proxy from the environment (`https_proxy`: a recording proxy on 127.0.0.1 sees the CONNECT;
// `no_proxy` bypasses it). The system trust store is changed for the server only: the test
// process moves into a private mount namespace (needs root) and bind-mounts a bundle holding
// the test CA over /etc/ssl/certs/ca-certificates.crt, libcurl's CA file on Debian.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/hardening_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using dispatch::delivery_of;
using dispatch::DeliveryInfo;
using dispatch::describe_deliveries;
using dispatch::json_string;
using dispatch::poll_until;
using dispatch::wait_for_state;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSystemBundle = "/etc/ssl/certs/ca-certificates.crt";

/// nginx over HTTPS on 127.0.0.1 with the test PKI's certificate: POST /post answers 200, GET
/// /files/X serves <root>/X. Requests are in its access log.
class TlsNginx {
 public:
  TlsNginx(const fs::path& dir, const hardening::TestPki& pki, const fs::path& root) : dir_(dir) {
    fs::create_directories(dir_);
    port_ = free_port();
    const std::string d = dir_.string();
    write_file(
        dir_ / "nginx.conf",
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid " + d +
            "/nginx.pid;\nerror_log " + d + "/error.log warn;\n" +
            "events { worker_connections 64; }\nhttp {\n  access_log " + d +
            "/access.log;\n  client_body_temp_path " + d + "/body;\n  proxy_temp_path " + d +
            "/proxy;\n  fastcgi_temp_path " + d + "/fcgi;\n  uwsgi_temp_path " + d +
            "/uwsgi;\n  scgi_temp_path " + d +
            "/scgi;\n  default_type application/fhir+ndjson;\n"
            "  server {\n    listen 127.0.0.1:" +
            std::to_string(port_) + " ssl;\n    ssl_certificate " + pki.server_cert.string() +
            ";\n    ssl_certificate_key " + pki.server_key.string() +
            ";\n    location = /post { return 200 \"ok\\n\"; }\n    location /files/ { alias " +
            root.string() + "/; }\n  }\n}\n");
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/sbin/nginx", "-p", d, "-c", d + "/nginx.conf", "-e",
                                 d + "/error.log"},
        dir_ / "nginx.out");
    REQUIRE_MESSAGE(poll_until([&] { return accepts_connections(port_); }, 10s),
                    "nginx did not start: ", read_file(dir_ / "nginx.out"),
                    read_file(dir_ / "error.log"));
  }
  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(port_) + path;
  }
  unsigned short port() const { return port_; }
  std::string access_log() const {
    std::error_code ec;
    return fs::exists(dir_ / "access.log", ec) ? read_file(dir_ / "access.log") : std::string();
  }

 private:
  fs::path dir_;
  unsigned short port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

/// An HTTP proxy on 127.0.0.1 that records each request line and tunnels CONNECTs to
/// 127.0.0.1 (anything else gets 403).
class RecordingProxy {
 public:
  RecordingProxy() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~RecordingProxy() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    for (auto& t : threads_)
      t.join();
    ::close(listen_fd_);
  }
  RecordingProxy(const RecordingProxy&) = delete;
  RecordingProxy& operator=(const RecordingProxy&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> lines() const {
    const std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }
  static bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  void serve(int client) {
    std::string head;
    char buffer[16384];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
      pollfd p{client, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      head.append(buffer, static_cast<std::size_t>(n));
    }
    const std::string line = head.substr(0, head.find("\r\n"));
    {
      const std::lock_guard lock(mutex_);
      lines_.push_back(line);
    }
    const std::string prefix = "CONNECT 127.0.0.1:";
    if (line.rfind(prefix, 0) != 0) {
      send_all(client, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      ::close(client);
      return;
    }
    const int port = std::atoi(line.c_str() + prefix.size());
    const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<unsigned short>(port));
    if (::connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        !send_all(client, "HTTP/1.1 200 Connection established\r\n\r\n")) {
      ::close(upstream);
      ::close(client);
      return;
    }
    // Relay both ways until either side closes (or the proxy stops).
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    while (!stopping_) {
      if (::poll(fds, 2, 200) < 0) break;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::recv(fds[i].fd, buffer, sizeof buffer, 0);
        if (n <= 0 ||
            !send_all(fds[1 - i].fd, std::string_view(buffer, static_cast<std::size_t>(n))))
          done = true;
      }
      if (done) break;
    }
    ::close(upstream);
    ::close(client);
  }

  int listen_fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

/// The test CA added to the system trust store, for this process and its children only (a
/// private mount namespace; needs root). Undone on destruction.
class TrustedCa {
 public:
  TrustedCa(const fs::path& dir, const fs::path& ca_cert) {
    REQUIRE_MESSAGE(::unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS): ", std::strerror(errno),
                    " (this test needs root)");
    REQUIRE_MESSAGE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
                    "making / private: ", std::strerror(errno));
    const fs::path bundle = dir / "bundle.pem";
    write_file(bundle, read_file(kSystemBundle) + "\n" + read_file(ca_cert));
    REQUIRE_MESSAGE(::mount(bundle.c_str(), kSystemBundle, nullptr, MS_BIND, nullptr) == 0,
                    "bind-mounting over ", kSystemBundle, ": ", std::strerror(errno));
  }
  ~TrustedCa() { ::umount2(kSystemBundle, MNT_DETACH); }
  TrustedCa(const TrustedCa&) = delete;
  TrustedCa& operator=(const TrustedCa&) = delete;
};

/// Sets (or unsets, for nullptr) an environment variable for the scope: the server started
/// meanwhile inherits it.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~EnvVar() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

/// Every proxy variable libcurl reads, cleared for the scope (the machine's own must not count).
struct NoProxyEnvironment {
  EnvVar a{"http_proxy", nullptr}, b{"https_proxy", nullptr}, c{"HTTPS_PROXY", nullptr},
      d{"all_proxy", nullptr}, e{"ALL_PROXY", nullptr}, f{"no_proxy", nullptr},
      g{"NO_PROXY", nullptr};
};

/// One http handler and one download handler, both aimed at `nginx`, with fast retries.
ServerConfig outbound_config(const TlsNginx& nginx, const fs::path& downloads) {
  ServerConfig config = download::download_config(
      {download::download_handler("fetch", downloads),
       R"({"name": "forward", "type": "http", "url": )" + json_string(nginx.url("/post")) + "}"});
  return config;
}

std::string export_for(const TlsNginx& nginx, const std::string& log_id) {
  return download::export_event(log_id, {{"Patient", nginx.url("/files/Patient.ndjson"), 2}},
                                false);
}

const std::string kPatients =
    "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n";

/// Waits until the delivery's last error mentions `needle`; returns the last row seen.
std::optional<DeliveryInfo> wait_for_error(const Server& server, const std::string& log_id,
                                           const std::string& handler, const std::string& needle) {
  std::optional<DeliveryInfo> last;
  poll_until(
      [&] {
        last = delivery_of(server, log_id, handler);
        return last && last->last_error.find(needle) != std::string::npos;
      },
      20s);
  return last;
}

void post_ok(const Server& server, const std::string& body) {
  const auto r = http(server.port(), post_event(body));
  REQUIRE_MESSAGE(r.status == 200, r.status, " ", r.body);
}

void wait_done(const Server& server, const std::string& log_id, const std::string& handler) {
  std::optional<DeliveryInfo> last;
  const bool done = wait_for_state(server, log_id, handler, "done", 20s, &last);
  INFO(describe_deliveries(server));
  INFO(server.log_tail(30));
  REQUIRE_MESSAGE(done, handler, " never done, last error: ", last ? last->last_error : "<none>");
}

/// A test PKI, a folder with Patient.ndjson and (once `serve()` ran) nginx serving it over
/// HTTPS with the PKI's certificate.
struct TlsExport {
  TempDir dir;
  hardening::TestPki pki = hardening::make_test_pki(dir.path());
  fs::path root = dir.path() / "root";
  std::unique_ptr<TlsNginx> nginx;

  TlsExport() {
    fs::create_directories(root);
    write_file(root / "Patient.ndjson", kPatients);
  }
  void serve() { nginx = std::make_unique<TlsNginx>(dir.path() / "nginx", pki, root); }
};

/// A server with both handlers aimed at `nginx`, one event posted; returns its Log ID.
std::string post_export(const Server& server, const TlsNginx& nginx) {
  const std::string id = new_log_id();
  post_ok(server, export_for(nginx, id));
  return id;
}

/// Posts an event; both handlers end done and the file is downloaded whole.
void delivered_by_both(const Server& server, const TlsNginx& nginx, const fs::path& downloads) {
  const std::string id = post_export(server, nginx);
  wait_done(server, id, "forward");
  wait_done(server, id, "fetch");
  CHECK(read_file(downloads / id / "Patient.1.ndjson") == kPatients);
}

}  // namespace

TEST_CASE(
    "promises outbound: http and download handlers refuse a self-signed https server with a "
    "certificate error - with its CA in the system trust store both deliver (needs root: "
    "mount namespace)") {
  if (auto why = download::Nginx::unavailable()) FAIL(*why);
  const NoProxyEnvironment no_proxy;
  TlsExport files;
  files.serve();
  const TlsNginx& nginx = *files.nginx;

  {
    TempDir run;
    Server server(run, outbound_config(nginx, run.path() / "downloads"));
    INFO("server log tail:\n", server.log_tail());
    const std::string id = post_export(server, nginx);
    for (const std::string handler : {"forward", "fetch"}) {
      CAPTURE(handler);
      const auto last = wait_for_error(server, id, handler, "certificate");
      REQUIRE(last.has_value());
      CHECK_MESSAGE(last->last_error.find("certificate") != std::string::npos, last->last_error);
      CHECK(last->state != "done");
    }
    CHECK_FALSE(fs::exists(run.path() / "downloads" / id / "Patient.1.ndjson"));
    CHECK_MESSAGE(nginx.access_log().empty(), "nginx answered a request: ", nginx.access_log());
  }

  const TrustedCa trusted(files.dir.path(), files.pki.ca_cert);
  TempDir run;
  Server server(run, outbound_config(nginx, run.path() / "downloads"));
  INFO("server log tail:\n", server.log_tail());
  delivered_by_both(server, nginx, run.path() / "downloads");
  CHECK(nginx.access_log().find("POST /post") != std::string::npos);
  CHECK(nginx.access_log().find("GET /files/Patient.ndjson") != std::string::npos);
}

TEST_CASE(
    "promises outbound: http and download handlers go through https_proxy (CONNECT) - "
    "no_proxy bypasses it (needs root: mount namespace)") {
  if (auto why = download::Nginx::unavailable()) FAIL(*why);
  const NoProxyEnvironment clean;
  TlsExport files;
  const TrustedCa trusted(files.dir.path(), files.pki.ca_cert);
  files.serve();
  const TlsNginx& nginx = *files.nginx;
  RecordingProxy proxy;
  const std::string connect = "CONNECT 127.0.0.1:" + std::to_string(nginx.port()) + " ";

  {
    const EnvVar via("https_proxy", proxy.url().c_str());
    TempDir run;
    Server server(run, outbound_config(nginx, run.path() / "downloads"));
    INFO("server log tail:\n", server.log_tail());
    delivered_by_both(server, nginx, run.path() / "downloads");
    const auto lines = proxy.lines();
    std::size_t connects = 0;
    for (const auto& l : lines)
      connects += l.rfind(connect, 0) == 0 ? 1 : 0;
    CHECK_MESSAGE(connects >= 2, "the proxy saw ", lines.size(), " requests, ", connects,
                  " CONNECTs to nginx (want one per handler)");
  }

  const std::size_t before = proxy.lines().size();
  const EnvVar via("https_proxy", proxy.url().c_str());
  const EnvVar bypass("no_proxy", "127.0.0.1");
  TempDir run;
  Server server(run, outbound_config(nginx, run.path() / "downloads"));
  INFO("server log tail:\n", server.log_tail());
  delivered_by_both(server, nginx, run.path() / "downloads");
  CHECK_MESSAGE(proxy.lines().size() == before, "the proxy was used despite no_proxy");
}
