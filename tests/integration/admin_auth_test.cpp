// The admin listener's gate, on the real binary: a token or a login's cookie, refused at the
// header (401) without a body byte read; a cookie-borne POST needs the listener's own Origin, a
// Bearer one none; the open loopback console answers loopback Host names and same-origin POSTs
// only; the start refuses a non-loopback listener without tokens; /metrics and the detailed
// readiness move to the admin listener. No token or session id ever reaches the log.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/admin_support.hpp"

namespace fbr::itest::admin {
namespace {

// A request that gets past the gate and is then refused by the route's own check: 400, not 401
// or 403, proves the gate let it through (without changing anything).
const std::string kPastTheGate = "/api/deliveries/replay?state=not-a-state";

std::string session_of(const HttpResponse& login) {
  const auto cookie = login.header("Set-Cookie");
  REQUIRE(cookie.has_value());
  const auto start = cookie->find("fbr_session=") + 12;
  return cookie->substr(start, cookie->find(';') - start);
}

void check_secrets_not_logged(const Console& console, const std::string& session) {
  const std::string log = console.server().log();
  CHECK(log.find(kAdminToken) == std::string::npos);
  if (!session.empty()) CHECK(log.find(session) == std::string::npos);
}

TEST_CASE("admin auth: without the admin token 401 at the header, with it the API answers") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    for (const std::string target : {"/api/status", "/api/events", "/metrics", "/readyz",
                                     "/api/quarantine", "/api/events/x", "/api/stream"}) {
      CAPTURE(target);
      const HttpResponse none = console.get(target, "");
      CHECK(none.status == 401);
      CHECK(none.body == R"({"error":"unauthorized"})");
      CHECK(console.get(target, "admin-secret-token-0123456788").status == 401);
    }
    CHECK(console.get("/api/status").status == 200);
    CHECK(console.get("/metrics").body.find("fbr_http_requests_total") != std::string::npos);
    // The session's state never 401s: the page asks it first.
    const auto anonymous = console.get("/api/session", "");
    CHECK(anonymous.status == 200);
    CHECK(anonymous.body == R"({"authenticated":false,"login_required":true})");
    CHECK(console.get("/api/session").body == R"({"authenticated":true,"login_required":true})");
    // The page loads without a token (it shows the login).
    CHECK(console.get("/", "").status == 200);
    check_secrets_not_logged(console, {});
  }
}

TEST_CASE("admin auth: the hostile twin: a stranger's large POST is refused before its body") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    // A declared 50 MB body that never comes: the 401 is there at once, and the connection
    // closes (nothing waits for the body).
    const std::string request =
        "POST /api/deliveries/replay?state=dead HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n";
    const auto started = std::chrono::steady_clock::now();
    const RawExchange ex = raw_exchange(console.admin_port(), request, 1, true, 10s);
    REQUIRE(ex.responses.size() == 1);
    CHECK(ex.responses[0].status == 401);
    CHECK(ex.closed);
    CHECK(ms_since(started) < 2000);
    // A wrong Bearer token beside nothing else: 401 as well, never a 5xx.
    CHECK(console.post(kPastTheGate, {}, "wrong").status == 401);
  }
}

TEST_CASE(
    "admin auth: login gives a strict cookie and a cookie POST needs our Origin but Bearer none") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    CHECK(console.post("/api/login", R"({"token":"wrong"})", "").status == 401);
    CHECK(console.post("/api/login", R"({"nope":1})", "").status == 400);
    const HttpResponse login =
        console.post("/api/login", R"({"token":")" + std::string(kAdminToken) + R"("})", "");
    REQUIRE(login.status == 204);
    const std::string cookie_header = login.header("Set-Cookie").value_or("");
    CHECK(cookie_header.find("HttpOnly") != std::string::npos);
    CHECK(cookie_header.find("SameSite=Strict") != std::string::npos);
    CHECK(cookie_header.find("Path=/") != std::string::npos);
    CHECK(cookie_header.find("Max-Age=43200") != std::string::npos);
    CHECK(cookie_header.find("Secure") == std::string::npos);  // plain HTTP here
    const std::string session = session_of(login);
    CHECK(session.size() == 64);
    const std::pair<std::string, std::string> cookie{"Cookie", "fbr_session=" + session};

    CHECK(console.get("/api/status", "").status == 401);
    HttpRequest with_cookie = get("/api/status");
    with_cookie.headers.push_back(cookie);
    CHECK(http(console.admin_port(), with_cookie).status == 200);
    with_cookie.target = "/api/session";
    CHECK(http(console.admin_port(), with_cookie).body ==
          R"({"authenticated":true,"login_required":true})");

    // A POST on the cookie: without an Origin, or with another one, 403; with ours it passes.
    const auto no_origin = console.post(kPastTheGate, {}, "", {cookie});
    CHECK(no_origin.status == 403);
    CHECK(no_origin.body.find(R"({"error":"origin)") == 0);
    CHECK(console.post(kPastTheGate, {}, "", {cookie, {"Origin", "http://evil.example"}}).status ==
          403);
    CHECK(console.post(kPastTheGate, {}, "", {cookie, {"Origin", "null"}}).status == 403);
    CHECK(console.post(kPastTheGate, {}, "", {cookie, {"Origin", console.origin()}}).status == 400);
    // A Bearer POST needs no Origin (the CLI, scripts).
    CHECK(console.post(kPastTheGate).status == 400);

    // A made-up or tampered session is nobody's.
    std::string tampered = session;
    tampered[0] = tampered[0] == 'a' ? 'b' : 'a';
    HttpRequest forged = get("/api/status");
    forged.headers.emplace_back("Cookie", "fbr_session=" + tampered);
    CHECK(http(console.admin_port(), forged).status == 401);

    // Logout forgets the session and clears the cookie.
    const HttpResponse logout =
        console.post("/api/logout", {}, "", {cookie, {"Origin", console.origin()}});
    CHECK(logout.status == 204);
    CHECK(logout.header("Set-Cookie").value_or("").find("Max-Age=0") != std::string::npos);
    with_cookie.target = "/api/status";
    CHECK(http(console.admin_port(), with_cookie).status == 401);
    check_secrets_not_logged(console, session);
  }
}

TEST_CASE("admin auth: loopback without tokens is open, to loopback Host names and our Origin") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    ConsoleOptions options;
    options.admin_tokens.clear();
    Console console(backend, options);
    CHECK(console.get("/api/status", "").status == 200);
    CHECK(console.get("/api/session", "").body ==
          R"({"authenticated":true,"login_required":false})");
    // A DNS-rebinding page reaches us under its own name: refused.
    HttpRequest rebound = get("/api/status");
    rebound.headers.emplace_back("Host", "evil.example:" + std::to_string(console.admin_port()));
    CHECK(http(console.admin_port(), rebound).status == 403);
    HttpRequest localhost = get("/api/status");
    localhost.headers.emplace_back("Host", "localhost:" + std::to_string(console.admin_port()));
    CHECK(http(console.admin_port(), localhost).status == 200);
    // A cross-site form's POST: refused; curl's (no Origin) and the page's pass.
    CHECK(console.post(kPastTheGate, {}, "", {{"Origin", "http://evil.example"}}).status == 403);
    CHECK(console.post(kPastTheGate, {}, "").status == 400);
    CHECK(console.post(kPastTheGate, {}, "", {{"Origin", console.origin()}}).status == 400);
  }
}

TEST_CASE("admin auth: a non-loopback admin.listen without tokens fails the start, saying why") {
  TempDir dir;
  ServerConfig config;
  config.extra_members = R"("admin": {"listen": "0.0.0.0:0"})";
  std::string error;
  try {
    Server server(dir, config);
  } catch (const std::exception& e) {
    error = e.what();
  }
  CHECK(error.find("admin.tokens") != std::string::npos);
  CHECK(error.find("loopback") != std::string::npos);
  // Its twin: the same address with a token starts.
  config.extra_members = R"("admin": {"listen": "0.0.0.0:0", "tokens": ["t0123456789abcdef"]})";
  TempDir other;
  Server server(other, config);
  CHECK(admin_port_of(server) > 0);
}

TEST_CASE("admin: /metrics and the detailed readiness move to the admin listener") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    const unsigned short webhook = console.server().port();
    CHECK(http(webhook, get("/metrics")).status == 404);
    const HttpResponse bare = http(webhook, get("/readyz"));
    CHECK(bare.status == 200);
    CHECK(bare.body == R"({"status":"ready"})");
    CHECK(http(webhook, get("/healthz")).status == 200);
    const HttpResponse metrics = console.get("/metrics");
    CHECK(metrics.status == 200);
    CHECK(metrics.body.find("fbr_build_info") != std::string::npos);
    const HttpResponse ready = console.get("/readyz");
    CHECK(ready.status == 200);
    CHECK(ready.body.find(R"("checks":[)") != std::string::npos);
    CHECK(ready.body.find("journal_writable") != std::string::npos);
  }
}

TEST_CASE("admin: every answer carries the security headers and the API's are never cached") {
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    Console console(backend);
    const HttpResponse page = console.get("/", "");
    CHECK(page.header("Content-Security-Policy").value_or("").find("default-src 'self'") !=
          std::string::npos);
    CHECK(page.header("Content-Security-Policy").value_or("").find("frame-ancestors 'none'") !=
          std::string::npos);
    CHECK(page.header("X-Frame-Options") == "DENY");
    CHECK(page.header("X-Content-Type-Options") == "nosniff");
    CHECK(page.header("Content-Type").value_or("").find("text/html") == 0);
    for (const std::string target : {"/api/status", "/api/session", "/nope"}) {
      CAPTURE(target);
      const HttpResponse api = console.get(target);
      CHECK(api.header("Cache-Control") == "no-store");
      CHECK(api.header("X-Content-Type-Options") == "nosniff");
      CHECK(api.header("X-Frame-Options") == "DENY");
    }
    CHECK(console.get("/nope").status == 404);
    CHECK(console.get("/assets/../api/status", "").status == 404);
    CHECK(console.post("/api/status").status == 405);
  }
}

}  // namespace
}  // namespace fbr::itest::admin
