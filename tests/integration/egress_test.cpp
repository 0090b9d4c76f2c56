// The egress policy and the download limits (issue 12), end to end on loopback: the real binary's
// download handler is given URLs that point at loopback, private and link-local addresses, at
// redirects, at a second "host" (127.0.0.2, 127.0.0.3) and through an http_proxy, while
// recording listeners (FileServer) note every connection and header that arrives. Nothing is
// sent beyond loopback: the refused addresses are refused before a socket exists (strace shows
// it), and the proxy test's name is never resolved (the proxy on 127.0.0.1 answers for it).
#include <doctest/doctest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/harness.hpp"

extern char** environ;

using namespace fbr::itest;
using namespace fbr::itest::download;
using dispatch::DeliveryInfo;
using dispatch::describe_deliveries;
using dispatch::poll_until;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kDeadline = std::chrono::seconds(30);

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

/// export_event with another `request` URL (its host is the default token host).
std::string event_with_request(const std::string& log_id, const std::vector<EventFile>& output,
                               bool requires_token, const std::string& request) {
  std::string body = export_event(log_id, output, requires_token);
  static constexpr std::string_view kRequest = "https://ehr.example.org/fhir/$export?_type=Patient";
  const auto at = body.find(kRequest);
  REQUIRE(at != std::string::npos);
  body.replace(at, kRequest.size(), request);
  return body;
}

std::string patient_lines(std::size_t count) {
  return generated_ndjson("Patient", count, 200);
}

/// Bytes of every file under `dir`.
std::uint64_t bytes_under(const fs::path& dir) {
  std::uint64_t total = 0;
  for (const auto& f : files_under(dir))
    total += fs::file_size(dir / f);
  return total;
}

/// strace attached to every thread of a process, recording its connect(2) calls.
class ConnectTrace {
 public:
  ConnectTrace(pid_t pid, fs::path out) : out_(std::move(out)) {
    std::vector<std::string> args = {"/usr/bin/strace",  "-f", "-qq", "-e",
                                     "trace=connect",    "-o", out_,  "-p",
                                     std::to_string(pid)};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE_MESSAGE(::access(args[0].c_str(), X_OK) == 0, "strace is missing");
    REQUIRE(::posix_spawn(&pid_, args[0].c_str(), nullptr, nullptr, argv.data(), environ) == 0);
    // Attached when every thread has a tracer.
    const bool attached = poll_until(
        [&] {
          std::error_code ec;
          for (const auto& task :
               fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
            const std::string status = read_file(task.path() / "status");
            const auto at = status.find("TracerPid:\t");
            if (at == std::string::npos || status.compare(at + 11, 2, "0\n") == 0) return false;
          }
          return !ec;
        },
        std::chrono::seconds(10));
    REQUIRE_MESSAGE(attached, "strace did not attach (needs root or CAP_SYS_PTRACE)");
  }
  ~ConnectTrace() { stop(); }
  ConnectTrace(const ConnectTrace&) = delete;
  ConnectTrace& operator=(const ConnectTrace&) = delete;

  /// Detaches (SIGINT) and returns what was recorded.
  std::string stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGINT);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    return read_file(out_);
  }

 private:
  fs::path out_;
  pid_t pid_ = -1;
};

/// A tmpfs mounted for the test, unmounted (lazily) at the end.
class Tmpfs {
 public:
  Tmpfs(const fs::path& dir, const std::string& options) : dir_(dir) {
    fs::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) == 0;
    REQUIRE_MESSAGE(mounted_, "mount -t tmpfs -o ", options, " ", dir_.string(),
                    " failed: ", std::strerror(errno), " (the test needs root)");
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

 private:
  fs::path dir_;
  bool mounted_ = false;
};

std::uint64_t free_bytes(const fs::path& dir) {
  struct statvfs st {};
  REQUIRE(::statvfs(dir.c_str(), &st) == 0);
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

}  // namespace

TEST_CASE("egress: loopback by literal and by name is refused without a connection unless listed") {
  FileServer recorder;  // 127.0.0.1
  const std::string body = patient_lines(20);
  recorder.put("/f/Patient.ndjson", Resource(body));
  const std::string by_literal = recorder.url("/f/Patient.ndjson");
  const std::string by_name =
      "http://localhost:" + std::to_string(recorder.port()) + "/f/Patient.ndjson";

  TempDir tmp;
  const fs::path strict_dir = tmp.path() / "strict";
  const fs::path listed_dir = tmp.path() / "listed";
  Server server(tmp,
                download_config(
                    {download_handler("strict", strict_dir, R"("allowed_hosts": [])"),
                     download_handler("listed", listed_dir, R"("allowed_hosts": ["127.0.0.1"])")}));
  const std::string literal_id = new_log_id();
  const std::string name_id = new_log_id();
  post_ok(server, export_event(literal_id, {{"Patient", by_literal}}, false));
  post_ok(server, export_event(name_id, {{"Patient", by_name}}, false));

  // The default policy: loopback refused, by its literal before libcurl runs, by a name after
  // DNS (in the open-socket callback, so no socket and no connect).
  const DeliveryInfo literal = wait_state(server, literal_id, "strict", "dead");
  CHECK(literal.attempts == 1);
  CHECK(contains(literal.last_error,
                 "refused 127.0.0.1: loopback address (allow with allowed_hosts or "
                 "allow_private_addresses)"));
  const DeliveryInfo name = wait_state(server, name_id, "strict", "dead");
  CHECK(name.attempts == 1);
  CHECK(contains(name.last_error, " for localhost: loopback address (allow with allowed_hosts"));
  // Listed: fetched. The name is not listed: refused before a connection too.
  wait_state(server, literal_id, "listed", "done");
  CHECK(read_file(listed_dir / literal_id / "Patient.1.ndjson") == body);
  const DeliveryInfo unlisted = wait_state(server, name_id, "listed", "dead");
  CHECK(contains(unlisted.last_error, "refused host localhost: not in allowed_hosts"));

  CHECK(recorder.connections() == 1);  // only the listed handler's fetch
  CHECK(recorder.count() == 1);
  CHECK(files_under(strict_dir / literal_id) == std::vector<std::string>{".lock", "log.ndjson"});
}

TEST_CASE(
    "egress: private and link-local literals are refused before any connect (needs root: strace)") {
  FileServer control;  // proves the trace sees the handler's connects
  control.put("/ok/Patient.ndjson", Resource(patient_lines(5)));
  TempDir tmp;
  Server server(tmp, download_config({download_handler("strict", tmp.path() / "strict",
                                                       R"("allow_private_addresses": false)"),
                                      download_handler("control", tmp.path() / "control")}));
  ConnectTrace trace(server.pid(), tmp.path() / "connect.trace");

  const std::vector<std::pair<std::string, std::string>> refused = {
      {"http://10.0.0.5:8080/Patient.ndjson", "refused 10.0.0.5: private address"},
      {"http://192.168.7.9/Patient.ndjson", "refused 192.168.7.9: private address"},
      {"http://169.254.169.254/latest/meta-data/", "refused 169.254.169.254: link-local address"},
      {"http://[::ffff:169.254.169.254]/latest/meta-data/",
       "refused ::ffff:169.254.169.254: link-local address"},
  };
  std::vector<std::string> ids;
  for (const auto& [url, why] : refused) {
    ids.push_back(new_log_id());
    post_ok(server, export_event(ids.back(), {{"Patient", url}}, false));
  }
  const std::string control_id = new_log_id();
  post_ok(server,
          export_event(control_id, {{"Patient", control.url("/ok/Patient.ndjson")}}, false));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CAPTURE(refused[i].first);
    const DeliveryInfo d = wait_state(server, ids[i], "strict", "dead");
    CHECK(d.attempts == 1);  // a policy refusal will not fix itself: dead, not retried
    CHECK(contains(d.last_error, refused[i].second));
    CHECK(contains(d.last_error, "(allow with allowed_hosts or allow_private_addresses)"));
  }
  wait_state(server, control_id, "control", "done");
  const std::string calls = trace.stop();
  CAPTURE(calls);
  // The control's fetch is in the trace; no refused address ever reached connect(2).
  CHECK(contains(
      calls, "htons(" + std::to_string(control.port()) + "), sin_addr=inet_addr(\"127.0.0.1\")"));
  for (const char* address : {"10.0.0.5", "192.168.7.9", "169.254.169.254"}) {
    CAPTURE(address);
    CHECK_FALSE(contains(calls, address));
  }
}

TEST_CASE(
    "egress: a redirect from an allowed host to a refused host is refused without a connection") {
  FileServer refused_host("127.0.0.3");
  refused_host.put("/stolen/Patient.ndjson", Resource(patient_lines(3)));
  FileServer api;
  api.put("/file/Patient.ndjson",
          Resource().redirecting_to(refused_host.url("/stolen/Patient.ndjson?X-Sig=secret-q")));
  // A chain of redirects on the allowed host: more than 5 is refused too.
  for (int i = 0; i < 6; ++i) {
    api.put("/loop/" + std::to_string(i),
            Resource().redirecting_to(api.url("/loop/" + std::to_string(i + 1))));
  }
  api.put("/loop/6", Resource(patient_lines(3)));
  TempDir tmp;
  Server server(tmp, download_config({download_handler("fetch", tmp.path() / "dl")}));
  const std::string id = new_log_id();
  const std::string loop_id = new_log_id();
  post_ok(server, export_event(id, {{"Patient", api.url("/file/Patient.ndjson")}}, false));
  post_ok(server, export_event(loop_id, {{"Patient", api.url("/loop/0")}}, false));

  const DeliveryInfo d = wait_state(server, id, "fetch", "dead");
  CHECK(d.attempts == 1);
  CHECK(contains(d.last_error, "redirect to " + refused_host.url("/stolen/Patient.ndjson") +
                                   ": refused host 127.0.0.3: not in allowed_hosts"));
  CHECK_FALSE(contains(d.last_error, "secret-q"));  // the query is cut from messages
  CHECK(api.count("/file/Patient.ndjson") == 1);
  CHECK(refused_host.connections() == 0);

  const DeliveryInfo loop = wait_state(server, loop_id, "fetch", "dead");
  CHECK(contains(loop.last_error, "more than 5 redirects"));
  CHECK(api.count("/loop/5") == 1);
  CHECK(api.count("/loop/6") == 0);
}

TEST_CASE("egress: the token reaches the request host and not a second allowed host") {
  const std::string token = "egress-token-8181";
  ::setenv("EGRESS_TEST_TOKEN", token.c_str(), 1);
  FileServer request_host;              // 127.0.0.1: the event's `request` is on it
  FileServer second_host("127.0.0.2");  // allowed, but not a token host
  const std::string body = patient_lines(10);
  request_host.put("/a/Patient.ndjson", Resource(body).with_bearer(token));
  second_host.put("/b/Patient.ndjson", Resource(body));
  second_host.put("/c/Patient.ndjson", Resource(body).with_bearer(token));
  TempDir tmp;
  const fs::path dir = tmp.path() / "dl";
  Server server(
      tmp,
      download_config({download_handler(
          "fetch", dir,
          R"("token_env": "EGRESS_TEST_TOKEN", "allowed_hosts": ["127.0.0.1", "127.0.0.2"])")}));
  const std::string request = request_host.url("/fhir/$export?_type=Patient");
  const std::string id = new_log_id();
  post_ok(server, event_with_request(id,
                                     {{"Patient", request_host.url("/a/Patient.ndjson")},
                                      {"Patient", second_host.url("/b/Patient.ndjson")}},
                                     true, request));
  wait_state(server, id, "fetch", "done");
  REQUIRE(request_host.requests("/a/Patient.ndjson").size() == 1);
  CHECK(request_host.requests("/a/Patient.ndjson")[0].header("Authorization") == "Bearer " + token);
  REQUIRE(second_host.requests().size() == 1);
  CHECK_FALSE(second_host.requests()[0].header("Authorization").has_value());
  CHECK(read_file(dir / id / "Patient.2.ndjson") == body);

  // The second host wants a token it was not given: dead, naming the host and the setting.
  const std::string wants_id = new_log_id();
  post_ok(server, event_with_request(wants_id, {{"Patient", second_host.url("/c/Patient.ndjson")}},
                                     true, request));
  const DeliveryInfo dead = wait_state(server, wants_id, "fetch", "dead");
  CHECK(dead.attempts == 1);
  CHECK(contains(dead.last_error, "HTTP 401"));
  CHECK(contains(dead.last_error, "127.0.0.2 is not in token_hosts"));
  for (const auto& r : second_host.requests())
    CHECK_FALSE(r.header("Authorization").has_value());
  CHECK_FALSE(contains(server.log(), token));
  ::unsetenv("EGRESS_TEST_TOKEN");
}

TEST_CASE(
    "egress: no token over plain http to a non-loopback host (through an http_proxy on loopback)") {
  const std::string token = "proxy-token-5150";
  ::setenv("EGRESS_PROXY_TOKEN", token.c_str(), 1);
  // The proxy answers for files.example: libcurl sends it the absolute URL and never resolves
  // the name itself, so nothing leaves loopback.
  FileServer proxy;
  const std::string body = patient_lines(10);
  const std::string file_url = "http://files.example/data/Patient.ndjson";
  proxy.put(file_url, Resource(body));
  ::setenv("http_proxy", ("http://127.0.0.1:" + std::to_string(proxy.port())).c_str(), 1);
  ::unsetenv("no_proxy");
  ::unsetenv("NO_PROXY");
  TempDir tmp;
  const fs::path dir = tmp.path() / "dl";
  std::optional<Server> server;
  try {
    // files.example is a token host: only the plain-http rule keeps the token back.
    server.emplace(tmp,
                   download_config({download_handler(
                       "fetch", dir,
                       R"("token_env": "EGRESS_PROXY_TOKEN", "allowed_hosts": ["files.example"], )"
                       R"("token_hosts": ["files.example"])")}));
  } catch (...) {
    ::unsetenv("http_proxy");
    throw;
  }
  ::unsetenv("http_proxy");  // the service read it at start; the test's own clients must not
  const std::string id = new_log_id();
  post_ok(*server, event_with_request(id, {{"Patient", file_url}}, true,
                                      "http://files.example/fhir/$export"));
  wait_state(*server, id, "fetch", "done");
  const auto seen = proxy.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].target == file_url);  // it went through the proxy
  CHECK_FALSE(seen[0].header("Authorization").has_value());
  CHECK_FALSE(seen[0].header("Proxy-Authorization").has_value());
  CHECK(read_file(dir / id / "Patient.1.ndjson") == body);
  ::unsetenv("EGRESS_PROXY_TOKEN");
}

TEST_CASE(
    "egress: a gzip bomb stops at max_decompression_ratio and at max_file_bytes, dead, removed") {
  // About 32 MiB of NDJSON, gzip'd twice: served with Content-Encoding: gzip over a .gz file.
  const std::string ndjson = generated_ndjson("Patient", 32 * 1024, 1024);
  const std::string once = gzip_with_tool(ndjson);
  const std::string twice = gzip_with_tool(once);
  MESSAGE("bomb: " << ndjson.size() << " NDJSON bytes from " << twice.size()
                   << " bytes on the wire");
  FileServer files;
  Resource encoded(twice);
  encoded.content_encoding = "gzip";
  files.put("/bomb/Patient.ndjson.gz", encoded);
  files.put("/plain/Patient.ndjson.gz", Resource(once));  // one layer, as a .gz file
  const std::uint64_t kMaxFile = 4 << 20;
  TempDir tmp;
  const fs::path ratio_dir = tmp.path() / "ratio";
  const fs::path size_dir = tmp.path() / "size";
  Server server(tmp, download_config({download_handler("ratio", ratio_dir),
                                      download_handler("size", size_dir,
                                                       R"("max_decompression_ratio": 1000000, )"
                                                       R"("max_file_bytes": )" +
                                                           std::to_string(kMaxFile))}));
  const std::string id = new_log_id();
  post_ok(server, export_event(id,
                               {{"Patient", files.url("/bomb/Patient.ndjson.gz")},
                                {"Patient", files.url("/plain/Patient.ndjson.gz")}},
                               false));
  const DeliveryInfo ratio = wait_state(server, id, "ratio", "dead");
  CHECK(ratio.attempts == 1);
  CHECK(contains(ratio.last_error, "2 of 2 files failed"));
  CHECK(contains(ratio.last_error, "past max_decompression_ratio (100): the file was removed"));
  const DeliveryInfo size = wait_state(server, id, "size", "dead");
  CHECK(size.attempts == 1);
  CHECK(contains(size.last_error, "its NDJSON is larger than max_file_bytes (" +
                                      std::to_string(kMaxFile) + " bytes)"));
  for (const fs::path& dir : {ratio_dir / id, size_dir / id}) {
    CAPTURE(dir);
    CHECK(files_under(dir) == std::vector<std::string>{".lock", "log.ndjson"});  // no part, no file
    CHECK(bytes_under(dir) < kMaxFile);
  }
}

TEST_CASE(
    "egress: a file over max_file_bytes is refused at its Content-Length and while it streams") {
  const std::string body = patient_lines(2000);  // about 400 KB
  FileServer files;
  files.put("/big/Patient.ndjson", Resource(body));
  // A .gz file: its Content-Length is small, its NDJSON is not.
  files.put("/gz/Patient.ndjson", Resource(gzip_with_tool(body)));
  TempDir tmp;
  const fs::path dir = tmp.path() / "dl";
  Server server(tmp,
                download_config({download_handler("fetch", dir, R"("max_file_bytes": 100000)")}));
  const std::string id = new_log_id();
  post_ok(server, export_event(id,
                               {{"Patient", files.url("/big/Patient.ndjson")},
                                {"Patient", files.url("/gz/Patient.ndjson")}},
                               false));
  const DeliveryInfo d = wait_state(server, id, "fetch", "dead");
  CHECK(contains(d.last_error, "the server announced " + std::to_string(body.size()) +
                                   " bytes, more than max_file_bytes (100000 bytes)"));
  CHECK(contains(d.last_error, "its NDJSON is larger than max_file_bytes (100000 bytes)"));
  CHECK(files_under(dir / id) == std::vector<std::string>{".lock", "log.ndjson"});
}

TEST_CASE("egress: max_event_bytes counts the stored bytes of the event's files") {
  const std::string body = patient_lines(500);  // about 100 KB each
  FileServer files;
  for (int i = 0; i < 3; ++i)
    files.put("/e/" + std::to_string(i), Resource(body));
  TempDir tmp;
  const fs::path dir = tmp.path() / "dl";
  Server server(tmp, download_config({download_handler("fetch", dir,
                                                       R"("parallel": 1, "max_event_bytes": )" +
                                                           std::to_string(body.size() * 2 + 10))}));
  const std::string id = new_log_id();
  post_ok(server, export_event(id,
                               {{"Patient", files.url("/e/0")},
                                {"Patient", files.url("/e/1")},
                                {"Patient", files.url("/e/2")}},
                               false));
  const DeliveryInfo d = wait_state(server, id, "fetch", "dead");
  CHECK(contains(d.last_error, "1 of 3 files failed"));
  CHECK(contains(d.last_error, "the event's files would pass max_event_bytes (" +
                                   std::to_string(body.size() * 2 + 10) + " bytes)"));
  CHECK(bytes_under(dir / id) - fs::file_size(dir / id / "log.ndjson") -
            fs::file_size(dir / id / ".verified.ndjson") <=
        body.size() * 2 + 10);
}

TEST_CASE(
    "egress: a download past a small tmpfs's free space stops at min_free_bytes and is retried "
    "while POSTs get 200 and /readyz 200 (needs root: tmpfs)") {
  TempDir tmp;  // the journal's data_dir: on the temp dir's filesystem, not the tmpfs
  const fs::path volume = tmp.path() / "volume";
  Tmpfs tmpfs(volume, "size=16m");
  const std::uint64_t kReserve = 8 << 20;
  const std::string body = generated_ndjson("Patient", 12 * 1024, 1024);  // 12 MiB
  FileServer files;
  files.put("/huge/Patient.ndjson", Resource(body));
  Server server(tmp, download_config({download_handler(
                         "fetch", volume, R"("min_free_bytes": )" + std::to_string(kReserve))}));
  const std::string id = new_log_id();
  post_ok(server, export_event(id, {{"Patient", files.url("/huge/Patient.ndjson")}}, false));

  std::optional<DeliveryInfo> last;
  const bool retried = poll_until(
      [&] {
        last = dispatch::delivery_of(server, id, "fetch");
        return last && last->attempts >= 2 && contains(last->last_error, "min_free_bytes");
      },
      kDeadline);
  INFO(describe_deliveries(server));
  REQUIRE_MESSAGE(retried, "last error: ", last ? last->last_error : "<no row>");
  CHECK(last->state != "done");
  CHECK(contains(last->last_error, "the download volume " + (volume / "").string()));
  CHECK(contains(last->last_error, "the reserve is min_free_bytes 8.0 MiB (8388608 bytes)"));
  CHECK(contains(last->last_error, "the delivery is retried later"));
  // The reserve held (a page of slack: tmpfs counts whole pages).
  CHECK(free_bytes(volume) + 64 * 1024 >= kReserve);
  CHECK(bytes_under(volume) <= (16u << 20) - kReserve);
  // The service itself is unaffected.
  const std::string other = new_log_id();
  post_ok(server, export_event(other, {}, false));
  CHECK(http(server.port(), get("/readyz")).status == 200);
  server.terminate();
}

TEST_CASE(
    "egress: query strings are cut from manifest.json, log.ndjson, errors and the log; the journal "
    "keeps them") {
  const std::string secret = "sig-secret-7777";
  const std::string body = patient_lines(10);
  FileServer files;
  files.put("/q/Patient.ndjson", Resource(body));
  TempDir tmp;
  const fs::path dir = tmp.path() / "dl";
  Server server(tmp, download_config({download_handler("fetch", dir)}));
  const std::string query = "?X-Amz-Signature=" + secret + "&X-Amz-Credential=cred#frag";
  const std::string done_id = new_log_id();
  const std::string dead_id = new_log_id();
  post_ok(server,
          export_event(done_id, {{"Patient", files.url("/q/Patient.ndjson" + query)}}, false));
  post_ok(server,
          export_event(dead_id, {{"Patient", files.url("/gone/Patient.ndjson" + query)}}, false));
  wait_state(server, done_id, "fetch", "done");
  const DeliveryInfo dead = wait_state(server, dead_id, "fetch", "dead");
  CHECK(files.requests("/q/Patient.ndjson").at(0).target ==
        "/q/Patient.ndjson" + query.substr(0, query.find('#')));
  const std::string manifest = read_file(dir / done_id / "manifest.json");
  CHECK(contains(manifest, "\"url\": \"" + files.url("/q/Patient.ndjson") + "\""));
  CHECK(contains(dead.last_error, "(" + files.url("/gone/Patient.ndjson") + "): HTTP 404"));
  for (const std::string& text :
       {manifest, read_file(dir / done_id / "log.ndjson"), read_file(dir / dead_id / "log.ndjson"),
        dead.last_error, server.log()}) {
    CHECK_FALSE(contains(text, secret));
    CHECK_FALSE(contains(text, "cred"));
  }
  // The journal keeps the event as it came.
  std::string journal = read_file(server.journal_path());
  if (fs::exists(server.journal_path().string() + "-wal"))
    journal += read_file(server.journal_path().string() + "-wal");
  CHECK(contains(journal, secret));
}
