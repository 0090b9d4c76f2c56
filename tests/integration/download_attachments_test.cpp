// The download handler's attachments (issue 18), end to end: a DocumentReference export on one
// loopback host (nginx, 127.0.0.1) whose attachments live on a second one (nginx, 127.0.0.2, its
// own access log) behind the same bearer token, and a third (127.0.0.3) that the token must never
// reach. What the service fetched is counted in nginx's access logs; what it stored is read from
// disk. Waiting is a poll with a deadline.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/text.hpp"
#include "tests/integration/dispatch_support.hpp"
#include "tests/integration/download_support.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
using namespace fbr::itest::download;
using dispatch::poll_until;
namespace fs = std::filesystem;

namespace {

constexpr auto kDeadline = std::chrono::seconds(30);
constexpr std::string_view kToken = "att-s3cret";

#define SKIP_WITHOUT_NGINX() \
  if (const auto why = Nginx::unavailable()) return skip_test(*why)

bool accepts(const std::string& address, unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// nginx with three loopback "hosts", each serving www/<n>/ and answering 401 unless the request
/// carries the token: 1 = the FHIR server (127.0.0.1), 2 = the attachment store (127.0.0.2), 3 =
/// another host (127.0.0.3); /to-host-3/ on any host redirects there. Each host logs "<request
/// line> <status> auth=<Authorization>".
class Hosts {
 public:
  explicit Hosts(const fs::path& dir) : dir_(dir) {
    for (int h = 1; h <= 3; ++h)
      fs::create_directories(dir_ / "www" / std::to_string(h));
    const std::string d = dir_.string();
    std::string conf = "daemon off;\nmaster_process off;\nworker_processes 1;\npid " + d +
                       "/nginx.pid;\nerror_log " + d +
                       "/error.log warn;\nevents { worker_connections 256; }\nhttp {\n"
                       "  log_format auth '$request $status auth=$http_authorization';\n";
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
      conf += "  " + std::string(t) + "_temp_path " + d + "/" + t + ";\n";
    conf +=
        "  types { application/fhir+ndjson ndjson; application/pdf pdf; text/plain txt; "
        "image/png png; }\n  default_type application/octet-stream;\n";
    for (int h = 1; h <= 3; ++h)
      ports_[h] = free_port();
    for (int h = 1; h <= 3; ++h) {
      conf += "  server {\n    listen 127.0.0." + std::to_string(h) + ":" +
              std::to_string(ports_[h]) + ";\n    root " +
              (dir_ / "www" / std::to_string(h)).string() + ";\n    access_log " + d + "/access" +
              std::to_string(h) + ".log auth;\n    if ($http_authorization != \"Bearer " +
              std::string(kToken) + "\") { return 401; }\n    location /to-host-3/ { return 302 " +
              url(3, "/other.pdf") + "; }\n  }\n";
    }
    conf += "}\n";
    write_file(dir_ / "nginx.conf", conf);
    nginx_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/sbin/nginx", "-p", d, "-c", d + "/nginx.conf", "-e",
                                 d + "/error.log"},
        dir_ / "nginx.out");
    REQUIRE_MESSAGE(poll_until(
                        [&] {
                          return accepts("127.0.0.1", ports_[1]) &&
                                 accepts("127.0.0.2", ports_[2]) && accepts("127.0.0.3", ports_[3]);
                        },
                        kDeadline),
                    read_file(dir_ / "error.log"));
  }

  std::string url(int host, std::string_view path) const {
    return "http://127.0.0." + std::to_string(host) + ":" + std::to_string(ports_.at(host)) +
           std::string(path);
  }
  void put(int host, const std::string& path, std::string_view bytes) const {
    const fs::path file = dir_ / "www" / std::to_string(host) / path.substr(1);
    fs::create_directories(file.parent_path());
    write_file(file, bytes);
  }
  std::vector<std::string> log(int host) const {
    const fs::path file = dir_ / ("access" + std::to_string(host) + ".log");
    return fs::exists(file) ? dispatch::file_lines(file) : std::vector<std::string>{};
  }
  /// Requests for `path` on `host` (any status).
  std::size_t count(int host, std::string_view path) const {
    const std::string prefix = "GET " + std::string(path) + " ";
    const auto lines = log(host);
    return static_cast<std::size_t>(std::count_if(
        lines.begin(), lines.end(), [&](const std::string& l) { return l.starts_with(prefix); }));
  }

 private:
  fs::path dir_;
  std::map<int, unsigned short> ports_;
  std::unique_ptr<ChildProcess> nginx_;
};

/// SHA-1 of `bytes`, base64 (FHIR's attachment.hash), by openssl's tool.
std::string sha1_base64(const TempDir& tmp, std::string_view bytes) {
  const fs::path in = tmp.path() / "sha1.in";
  write_file(in, bytes);
  const auto r = run_program(
      {"sh", "-c", "openssl dgst -sha1 -binary " + in.string() + " | openssl base64 -A"});
  REQUIRE(r.exit_code == 0);
  std::string out = r.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
    out.pop_back();
  return out;
}

/// One DocumentReference line pointing at `url` (empty: inline data instead).
std::string doc_ref(const std::string& id, const std::string& url, const std::string& type,
                    const std::string& extra = {}) {
  std::string a = R"({"contentType": )" + dispatch::json_string(type);
  if (url.empty()) {
    a += R"(, "data": "aGVsbG8=")";
  } else {
    a += R"(, "url": )" + dispatch::json_string(url);
  }
  a += extra + "}";
  return R"({"resourceType":"DocumentReference","id":")" + id +
         R"(","status":"current","content":[{"attachment":)" + a + "}]}\n";
}

/// A complete event: DocumentReference.ndjson (and Patient.ndjson when given) on host 1, its
/// request on host 1's /fhir base.
std::string attachment_event(const Hosts& hosts, const std::string& log_id,
                             const std::string& patients = {}) {
  std::string output = R"([{"type": "DocumentReference", "url": )" +
                       dispatch::json_string(hosts.url(1, "/fhir/DocumentReference.ndjson")) + "}";
  if (!patients.empty()) {
    output += R"(, {"type": "Patient", "url": )" +
              dispatch::json_string(hosts.url(1, "/fhir/Patient.ndjson")) + "}";
  }
  output += "]";
  return R"({"Meta": {"DataModel": "FHIR Bulk Data Access", "EventType": "status-check-response",
  "EventDateTime": "2024-02-20T10:00:05.000Z", "Test": true,
  "Logs": [{"ID": )" +
         dispatch::json_string(log_id) + R"(, "AttemptID": )" +
         dispatch::json_string(new_log_id()) + R"(}]},
  "status": 200, "transactionTime": "2024-02-20T10:00:00Z",
  "request": )" +
         dispatch::json_string(hosts.url(1, "/fhir/$export?_type=DocumentReference")) +
         R"(, "requiresAccessToken": true, "output": )" + output + R"(, "error": []})";
}

/// A download handler that reads the token from `token_file`, may reach hosts 1-3 and sends the
/// token to 1 and 2 only.
std::string handler(const std::string& name, const fs::path& dir, const fs::path& token_file,
                    const std::string& attachments, const std::string& more = {}) {
  return download_handler(
      name, dir,
      R"("token_file": )" + dispatch::json_string(token_file.string()) +
          R"(, "allowed_hosts": ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"],
          "token_hosts": ["127.0.0.1", "127.0.0.2", "127.0.0.4"])" +
          (attachments.empty() ? "" : R"(, "attachments": )" + attachments) +
          (more.empty() ? "" : ", " + more));
}

fs::path token_file(const TempDir& tmp) {
  const fs::path file = tmp.path() / "token";
  write_file(file, kToken);
  return file;
}

std::vector<std::string> attachment_files(const fs::path& event_dir) {
  std::vector<std::string> out;
  for (const auto& f : files_under(event_dir)) {
    if (f.starts_with("attachments/")) out.push_back(f);
  }
  return out;
}

}  // namespace

TEST_CASE("download attachments: stored once per URL, relative URLs resolved, off and types") {
  SKIP_WITHOUT_NGINX();
  TempDir tmp;
  Hosts hosts(tmp.path() / "nginx");
  const std::string pdf = "%PDF-1.4 a clinical note\n" + std::string(5000, 'x');
  const std::string note = "plain text note\n";
  hosts.put(2, "/notes/a.pdf", pdf);
  hosts.put(1, "/fhir/Binary/n.txt", note);
  const std::string ndjson = doc_ref("d1", hosts.url(2, "/notes/a.pdf"), "application/pdf",
                                     R"(, "size": )" + std::to_string(pdf.size()) +
                                         R"(, "hash": ")" + sha1_base64(tmp, pdf) + "\"") +
                             doc_ref("d2", hosts.url(2, "/notes/a.pdf"), "application/pdf") +
                             doc_ref("d3", "Binary/n.txt", "text/plain; charset=utf-8") +
                             doc_ref("d4", "", "text/plain");
  hosts.put(1, "/fhir/DocumentReference.ndjson", ndjson);

  const fs::path all = tmp.path() / "all";
  const fs::path off = tmp.path() / "off";
  const fs::path typed = tmp.path() / "typed";
  const fs::path packed = tmp.path() / "packed";
  const fs::path token = token_file(tmp);
  Server server(
      tmp,
      download_config(
          {handler("all", all, token, R"({"mode": "download"})"), handler("off", off, token, ""),
           handler("typed", typed, token, R"({"mode": "download", "types": ["text/*"]})"),
           handler("packed", packed, token, R"({"mode": "download"})", R"("store": "gzip")")}));
  const std::string log_id = new_log_id();
  post_ok(server, attachment_event(hosts, log_id));
  wait_state(server, log_id, "all", "done");
  wait_state(server, log_id, "off", "done");
  wait_state(server, log_id, "typed", "done");
  wait_state(server, log_id, "packed", "done");

  // Two resources, one URL: one request (per handler that downloads them), one file.
  CHECK(hosts.count(2, "/notes/a.pdf") == 2);        // "all" and "packed"
  CHECK(hosts.count(1, "/fhir/Binary/n.txt") == 3);  // and "typed" (text/*)
  for (const auto& line : hosts.log(2))
    CHECK(line.find(std::string("auth=Bearer ") + std::string(kToken)) != std::string::npos);

  const fs::path event_dir = all / log_id;
  CHECK(read_file(event_dir / "DocumentReference.1.ndjson") == ndjson);  // byte-identical
  const std::string pdf_file = "attachments/" + fbr::core::sha256_hex(pdf) + ".pdf";
  const std::string txt_file = "attachments/" + fbr::core::sha256_hex(note) + ".txt";
  CHECK(attachment_files(event_dir) == std::vector<std::string>{pdf_file, txt_file});
  CHECK(read_file(event_dir / pdf_file) == pdf);
  CHECK(read_file(event_dir / txt_file) == note);
  CHECK(mode_of(event_dir / pdf_file) == 0600);

  const auto manifest = parse_json(read_file(event_dir / "manifest.json"));
  REQUIRE(manifest["attachments"].IsArray());
  REQUIRE(manifest["attachments"].Size() == 3);
  std::map<std::string, std::string> file_of;
  for (const auto& a : manifest["attachments"].GetArray()) {
    file_of[a["resourceId"].GetString()] = a["file"].GetString();
    CHECK(a["sha256"].IsString());
    CHECK(a["bytes"].IsUint64());
  }
  CHECK(file_of == std::map<std::string, std::string>{{"DocumentReference/d1", pdf_file},
                                                      {"DocumentReference/d2", pdf_file},
                                                      {"DocumentReference/d3", txt_file}});
  CHECK(json_str(manifest, "/attachments/0/url") == hosts.url(2, "/notes/a.pdf"));
  CHECK(json_str(manifest, "/attachments/0/contentType") == "application/pdf");
  CHECK(json_raw(manifest, "/attachments/0/bytes") == std::to_string(pdf.size()));
  CHECK(json_str(manifest, "/attachments/2/url") == hosts.url(1, "/fhir/Binary/n.txt"));

  const auto events = export_log(event_dir / "log.ndjson");
  REQUIRE_FALSE(events.empty());
  CHECK(events.back().first == "export_complete");
  CHECK(json_raw(parse_json(events.back().second), "/attachments") == "2");
  std::size_t attachment_requests = 0;
  for (const auto& [id, detail] : events) {
    if (id == "download_request" &&
        json_str(parse_json(detail), "/itemType") == std::string("attachment")) {
      ++attachment_requests;
    }
  }
  CHECK(attachment_requests == 2);

  // store: gzip reads the attachments from the gzip'd NDJSON.
  CHECK(attachment_files(packed / log_id) == std::vector<std::string>{pdf_file, txt_file});
  // off: none fetched, no folder; typed: only the text note.
  CHECK(attachment_files(off / log_id).empty());
  CHECK(parse_json(read_file(off / log_id / "manifest.json"))["attachments"].Size() == 0);
  CHECK(attachment_files(typed / log_id) == std::vector<std::string>{txt_file});
  const auto typed_manifest = parse_json(read_file(typed / log_id / "manifest.json"));
  REQUIRE(typed_manifest["attachments"].Size() == 1);
  CHECK(json_str(typed_manifest, "/attachments/0/resourceId") == "DocumentReference/d3");
}

TEST_CASE("download attachments: a wrong size or hash and a 404 fail the delivery naming each") {
  SKIP_WITHOUT_NGINX();
  TempDir tmp;
  Hosts hosts(tmp.path() / "nginx");
  const std::string pdf = "%PDF-1.4 note b\n";
  const std::string png = "\x89PNG not really";
  hosts.put(2, "/b.pdf", pdf);
  hosts.put(2, "/c.png", png);
  hosts.put(1, "/fhir/DocumentReference.ndjson",
            doc_ref("sized", hosts.url(2, "/b.pdf"), "application/pdf", R"(, "size": 999)") +
                doc_ref("hashed", hosts.url(2, "/c.png"), "image/png",
                        R"(, "hash": ")" + sha1_base64(tmp, "something else") + "\"") +
                doc_ref("gone", hosts.url(2, "/missing.pdf?sig=secret"), "application/pdf"));
  const fs::path downloads = tmp.path() / "downloads";
  Server server(
      tmp,
      download_config({handler("fetch", downloads, token_file(tmp), R"({"mode": "download"})")}));
  const std::string log_id = new_log_id();
  post_ok(server, attachment_event(hosts, log_id));
  const auto dead = wait_state(server, log_id, "fetch", "dead");
  CAPTURE(dead.last_error);
  CHECK(dead.attempts == 1);  // permanent: not retried
  CHECK(dead.last_error.find("3 of 3 attachments failed") != std::string::npos);
  CHECK(dead.last_error.find("DocumentReference/sized (" + hosts.url(2, "/b.pdf") +
                             "): attachment.size is 999, the server sent " +
                             std::to_string(pdf.size()) + " bytes") != std::string::npos);
  CHECK(dead.last_error.find("DocumentReference/hashed (" + hosts.url(2, "/c.png") +
                             "): attachment.hash") != std::string::npos);
  CHECK(dead.last_error.find("DocumentReference/gone (" + hosts.url(2, "/missing.pdf") +
                             "): HTTP 404") != std::string::npos);
  CHECK(dead.last_error.find("secret") == std::string::npos);  // the query is cut
  const fs::path event_dir = downloads / log_id;
  CHECK_FALSE(fs::exists(event_dir / "manifest.json"));
  CHECK(attachment_files(event_dir).empty());  // what failed its checks is removed
  CHECK(fs::exists(event_dir / "DocumentReference.1.ndjson"));
}

TEST_CASE("download attachments: egress refusal, no token to another host, past max_bytes") {
  SKIP_WITHOUT_NGINX();
  TempDir tmp;
  Hosts hosts(tmp.path() / "nginx");
  FileServer elsewhere("127.0.0.9");  // not in allowed_hosts
  elsewhere.put("/x.pdf", Resource("never"));
  hosts.put(3, "/other.pdf", "on another host");
  hosts.put(2, "/big.bin", std::string(4096, 'b'));
  hosts.put(2, "/ok.txt", "small");
  hosts.put(1, "/fhir/DocumentReference.ndjson",
            doc_ref("refused", elsewhere.url("/x.pdf"), "application/pdf") +
                doc_ref("other", hosts.url(3, "/other.pdf"), "application/pdf") +
                doc_ref("big", hosts.url(2, "/big.bin"), "application/octet-stream") +
                doc_ref("redirected", hosts.url(2, "/to-host-3/x"), "application/pdf") +
                doc_ref("ok", hosts.url(2, "/ok.txt"), "text/plain"));
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({handler("fetch", downloads, token_file(tmp),
                                              R"({"mode": "download", "max_bytes": 1000})")}));
  const std::string log_id = new_log_id();
  post_ok(server, attachment_event(hosts, log_id));
  const auto dead = wait_state(server, log_id, "fetch", "dead");
  CAPTURE(dead.last_error);
  CHECK(dead.last_error.find("4 of 5 attachments failed") != std::string::npos);
  CHECK(dead.last_error.find("DocumentReference/refused (" + elsewhere.url("/x.pdf") +
                             "): refused host 127.0.0.9: not in allowed_hosts") !=
        std::string::npos);
  CHECK(elsewhere.connections() == 0);
  CHECK(dead.last_error.find("DocumentReference/other (" + hosts.url(3, "/other.pdf") +
                             "): HTTP 401") != std::string::npos);
  CHECK(dead.last_error.find("from 127.0.0.3 (no access token was sent: 127.0.0.3 is not in "
                             "token_hosts") != std::string::npos);
  // Host 2 answered the redirect (with the token), host 3 never saw it.
  CHECK(dead.last_error.find("DocumentReference/redirected (" + hosts.url(2, "/to-host-3/x") +
                             "): HTTP 401") != std::string::npos);
  CHECK(dead.last_error.find("a redirect to another host, port or scheme gets no token") !=
        std::string::npos);
  CHECK(hosts.count(2, "/to-host-3/x") == 1);
  REQUIRE(hosts.count(3, "/other.pdf") == 2);
  for (const auto& line : hosts.log(3))
    CHECK(line.ends_with("auth=-"));  // the token never went to host 3
  CHECK(dead.last_error.find("DocumentReference/big (" + hosts.url(2, "/big.bin") +
                             "): the server announced 4096 bytes, more than "
                             "attachments.max_bytes (1000)") != std::string::npos);
  const fs::path event_dir = downloads / log_id;
  CHECK(attachment_files(event_dir) ==
        std::vector<std::string>{"attachments/" + fbr::core::sha256_hex("small") + ".txt"});
}

TEST_CASE("download attachments: more than max_count is dead before any is fetched") {
  SKIP_WITHOUT_NGINX();
  TempDir tmp;
  Hosts hosts(tmp.path() / "nginx");
  hosts.put(2, "/a.txt", "a");
  hosts.put(2, "/b.txt", "b");
  hosts.put(2, "/c.txt", "c");
  const std::string ndjson = doc_ref("d1", hosts.url(2, "/a.txt"), "text/plain") +
                             doc_ref("d2", hosts.url(2, "/b.txt"), "text/plain") +
                             doc_ref("d3", hosts.url(2, "/c.txt"), "text/plain");
  hosts.put(1, "/fhir/DocumentReference.ndjson", ndjson);
  const fs::path two = tmp.path() / "two";
  const fs::path three = tmp.path() / "three";
  const fs::path token = token_file(tmp);
  Server server(
      tmp,
      download_config({handler("two", two, token, R"({"mode": "download", "max_count": 2})"),
                       handler("three", three, token, R"({"mode": "download", "max_count": 3})")}));
  const std::string log_id = new_log_id();
  post_ok(server, attachment_event(hosts, log_id));
  const auto dead = wait_state(server, log_id, "two", "dead");
  CHECK(dead.last_error.find("more than attachments.max_count (2) attachments: none was "
                             "fetched") != std::string::npos);
  wait_state(server, log_id, "three", "done");
  // Only the handler within its limit asked for them.
  CHECK(hosts.count(2, "/a.txt") == 1);
  CHECK(hosts.count(2, "/c.txt") == 1);
  CHECK(read_file(two / log_id / "DocumentReference.1.ndjson") == ndjson);  // the file is kept
  CHECK(attachment_files(two / log_id).empty());
  CHECK(attachment_files(three / log_id).size() == 3);
}

TEST_CASE("download attachments: a restart mid-way fetches nothing twice") {
  SKIP_WITHOUT_NGINX();
  TempDir tmp;
  Hosts hosts(tmp.path() / "nginx");
  FileServer slow("127.0.0.4");
  const std::string slow_bytes(200'000, 's');
  slow.put("/slow.bin", Resource(slow_bytes).stall_after(100'000).with_bearer(std::string(kToken)));
  std::string ndjson = doc_ref("slow", slow.url("/slow.bin"), "application/octet-stream");
  for (int i = 0; i < 6; ++i) {
    const std::string path = "/n/" + std::to_string(i) + ".txt";
    hosts.put(2, path, "note " + std::to_string(i));
    ndjson += doc_ref("n" + std::to_string(i), hosts.url(2, path), "text/plain");
  }
  hosts.put(1, "/fhir/DocumentReference.ndjson", ndjson);
  hosts.put(1, "/fhir/Patient.ndjson",
            R"({"resourceType":"Patient","id":"p"})"
            "\n");
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({handler("fetch", downloads, token_file(tmp),
                                              R"({"mode": "download"})", R"("parallel": 2)")}));
  const std::string log_id = new_log_id();
  post_ok(server, attachment_event(hosts, log_id, "patients"));
  const fs::path event_dir = downloads / log_id;
  const auto verified_attachments = [&] {
    std::size_t n = 0;
    std::error_code ec;
    if (!fs::exists(event_dir / ".verified.ndjson", ec)) return n;
    for (const auto& line : dispatch::file_lines(event_dir / ".verified.ndjson"))
      n += line.starts_with("{\"attachment\":") ? 1 : 0;
    return n;
  };
  REQUIRE_MESSAGE(
      poll_until([&] { return slow.stalled() && verified_attachments() == 6; }, kDeadline),
      server.log_tail());
  server.kill9();
  slow.release();
  server.start();
  wait_state(server, log_id, "fetch", "done");

  // Verified before the kill: neither the files nor the six notes were asked for again.
  CHECK(hosts.count(1, "/fhir/DocumentReference.ndjson") == 1);
  CHECK(hosts.count(1, "/fhir/Patient.ndjson") == 1);
  for (int i = 0; i < 6; ++i)
    CHECK(hosts.count(2, "/n/" + std::to_string(i) + ".txt") == 1);
  CHECK(slow.count("/slow.bin") == 2);  // cut by the kill: fetched again, whole
  CHECK(attachment_files(event_dir).size() == 7);
  CHECK(read_file(event_dir / ("attachments/" + fbr::core::sha256_hex(slow_bytes) + ".bin")) ==
        slow_bytes);
  const auto manifest = parse_json(read_file(event_dir / "manifest.json"));
  CHECK(manifest["attachments"].Size() == 7);
  for (const auto& f : files_under(event_dir))
    CHECK_FALSE(fs::path(f).filename().string().ends_with(".part"));

  // Done, then replayed: manifest.json lists every attachment, none is fetched again.
  const auto r = run_cli({"replay", "--config", server.config_path().string(), "--log-id", log_id});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output());
  REQUIRE(poll_until(
      [&] {
        return dispatch::log_lines_with(server, {"download_complete", log_id, "fetched=0",
                                                 "attachments=7", "attachments_fetched=0"})
                   .size() == 1;
      },
      kDeadline));
  CHECK(slow.count("/slow.bin") == 2);
  CHECK(hosts.count(2, "/n/0.txt") == 1);
}

TEST_CASE("download attachments: a 503 is tried again and equal bytes at two URLs are one file") {
  FileServer files;
  const std::string token(kToken);
  const std::string bytes = "the same report";
  files.put("/a/one.txt", Resource(bytes).first_answers({503}).with_bearer(token));
  files.put("/a/two.txt", Resource(bytes).with_bearer(token));
  files.put("/fhir/DocumentReference.ndjson",
            Resource(doc_ref("one", files.url("/a/one.txt"), "text/plain") +
                     doc_ref("two", files.url("/a/two.txt"), "text/plain"))
                .with_bearer(token));
  TempDir tmp;
  const fs::path downloads = tmp.path() / "downloads";
  Server server(tmp, download_config({download_handler(
                         "fetch", downloads,
                         R"("token_file": )" + dispatch::json_string(token_file(tmp).string()) +
                             R"(, "attachments": {"mode": "download"})")}));
  const std::string log_id = new_log_id();
  std::string event = R"({"Meta": {"DataModel": "FHIR Bulk Data Access",
    "EventType": "status-check-response", "EventDateTime": "2024-02-20T10:00:05.000Z",
    "Logs": [{"ID": )" +
                      dispatch::json_string(log_id) +
                      R"(}]}, "status": 200, "transactionTime": "2024-02-20T10:00:00Z",
    "request": )" + dispatch::json_string(files.url("/fhir/$export")) +
                      R"(, "requiresAccessToken": true, "output": [{"type": "DocumentReference",
    "url": )" + dispatch::json_string(files.url("/fhir/DocumentReference.ndjson")) +
                      R"(}], "error": []})";
  post_ok(server, event);
  const auto done = wait_state(server, log_id, "fetch", "done");
  CHECK(done.attempts == 1);  // the 503 was tried again within the transfer's tries
  CHECK(files.count("/a/one.txt") == 2);
  CHECK(files.count("/a/two.txt") == 1);
  const fs::path event_dir = downloads / log_id;
  CHECK(attachment_files(event_dir) ==
        std::vector<std::string>{"attachments/" + fbr::core::sha256_hex(bytes) + ".txt"});
  const auto manifest = parse_json(read_file(event_dir / "manifest.json"));
  REQUIRE(manifest["attachments"].Size() == 2);
  CHECK(json_str(manifest, "/attachments/0/file") == json_str(manifest, "/attachments/1/file"));
  CHECK(json_raw(parse_json(export_log(event_dir / "log.ndjson").back().second), "/attachments") ==
        "1");
}
