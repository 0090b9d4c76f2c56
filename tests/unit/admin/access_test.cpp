// The admin gate's pure decisions: tokens in constant time, sessions (expiry, a removed token
// ends its sessions, the bound), the cookie and Origin rules, loopback Host names, the open
// console.
#include "server/admin/access.hpp"

#include <doctest/doctest.h>

#include <string>

namespace fbr::server::admin {
namespace {

using Clock = Sessions::Clock;

config::Admin admin(std::vector<std::string> tokens, std::string host = "127.0.0.1") {
  config::Admin a;
  a.listen = config::Listen{std::move(host), 8081};
  a.tokens = std::move(tokens);
  return a;
}

RequestHeader header(http::verb method, std::vector<std::pair<std::string, std::string>> fields,
                     std::string host = "127.0.0.1:8081") {
  RequestHeader h;
  h.method(method);
  h.target("/api/status");
  h.set(http::field::host, host);
  for (auto& [name, value] : fields)
    h.insert(name, value);
  return h;
}

TEST_CASE("admin access: a Bearer admin token opens, a wrong or missing one is 401") {
  Sessions sessions;
  const auto settings = admin({"tok-a", "tok-b"});
  const auto now = Clock::now();
  CHECK(decide(header(http::verb::get, {{"Authorization", "Bearer tok-b"}}), settings, false,
               sessions, now)
            .allowed);
  CHECK(decide(header(http::verb::post, {{"Authorization", "bearer tok-a"}}), settings, false,
               sessions, now)
            .allowed);
  for (const std::string value :
       {"Bearer tok-c", "Bearer tok-a2", "Basic tok-a", "Bearer ", "tok-a"}) {
    CAPTURE(value);
    const Access a =
        decide(header(http::verb::get, {{"Authorization", value}}), settings, false, sessions, now);
    CHECK_FALSE(a.allowed);
    CHECK(a.status == http::status::unauthorized);
    CHECK(a.error == "unauthorized");
  }
  CHECK_FALSE(decide(header(http::verb::get, {}), settings, false, sessions, now).allowed);
  // The webhook's token header is not an admin way in.
  CHECK_FALSE(decide(header(http::verb::get, {{"verification-token", "tok-a"}}), settings, false,
                     sessions, now)
                  .allowed);
}

TEST_CASE("admin access: a session cookie opens GETs and POSTs with our Origin only") {
  Sessions sessions;
  const auto settings = admin({"tok"});
  const auto now = Clock::now();
  const std::string id = sessions.create("tok", std::chrono::seconds(60), now);
  const std::string cookie = "other=1; fbr_session=" + id;
  const Access get =
      decide(header(http::verb::get, {{"Cookie", cookie}}), settings, false, sessions, now);
  CHECK(get.allowed);
  CHECK(get.via_cookie);
  const Access no_origin =
      decide(header(http::verb::post, {{"Cookie", cookie}}), settings, false, sessions, now);
  CHECK_FALSE(no_origin.allowed);
  CHECK(no_origin.status == http::status::forbidden);
  CHECK(no_origin.error.rfind("origin", 0) == 0);
  CHECK_FALSE(
      decide(header(http::verb::post, {{"Cookie", cookie}, {"Origin", "http://127.0.0.1:8082"}}),
             settings, false, sessions, now)
          .allowed);
  CHECK_FALSE(
      decide(header(http::verb::post, {{"Cookie", cookie}, {"Origin", "http://127.0.0.1:8081"}}),
             settings, true, sessions, now)
          .allowed);  // over TLS our origin is https://
  CHECK(decide(header(http::verb::post, {{"Cookie", cookie}, {"Origin", "http://127.0.0.1:8081"}}),
               settings, false, sessions, now)
            .allowed);
  // A valid cookie does not rescue a wrong token beside it.
  CHECK_FALSE(
      decide(header(http::verb::get, {{"Cookie", cookie}, {"Authorization", "Bearer nope"}}),
             settings, false, sessions, now)
          .allowed);
}

TEST_CASE("admin access: sessions expire, die with their token, and are bounded") {
  Sessions sessions;
  const auto now = Clock::now();
  const std::string id = sessions.create("tok", std::chrono::seconds(60), now);
  CHECK(id.size() == 64);
  CHECK(id != sessions.create("tok", std::chrono::seconds(60), now));
  CHECK(sessions.valid(id, {"tok"}, now + std::chrono::seconds(59)));
  CHECK_FALSE(sessions.valid(id, {"other"}, now));  // its token was removed by a reload
  CHECK_FALSE(sessions.valid(id, {"tok"}, now + std::chrono::seconds(60)));
  CHECK_FALSE(sessions.valid(id, {"tok"}, now));  // an expired one is forgotten
  const std::string kept = sessions.create("tok", std::chrono::seconds(60), now);
  sessions.forget(kept);
  CHECK_FALSE(sessions.valid(kept, {"tok"}, now));
  CHECK_FALSE(sessions.valid("", {"tok"}, now));
  CHECK_FALSE(sessions.valid(std::string(64, 'a'), {"tok"}, now));
  for (int i = 0; i < 10'050; ++i)
    sessions.create("tok", std::chrono::seconds(60), now);
  CHECK(sessions.size() <= 10'000);
}

TEST_CASE("admin access: the open console takes loopback Host names and same-origin POSTs") {
  Sessions sessions;
  const auto settings = admin({});
  const auto now = Clock::now();
  CHECK(decide(header(http::verb::get, {}), settings, false, sessions, now).open);
  CHECK(decide(header(http::verb::get, {}, "localhost:8081"), settings, false, sessions, now)
            .allowed);
  CHECK(decide(header(http::verb::get, {}, "[::1]:8081"), settings, false, sessions, now).allowed);
  const Access rebound =
      decide(header(http::verb::get, {}, "evil.example:8081"), settings, false, sessions, now);
  CHECK_FALSE(rebound.allowed);
  CHECK(rebound.status == http::status::forbidden);
  CHECK(decide(header(http::verb::post, {}), settings, false, sessions, now).allowed);
  CHECK_FALSE(decide(header(http::verb::post, {{"Origin", "http://evil.example"}}), settings, false,
                     sessions, now)
                  .allowed);
  // Off loopback without tokens (the start refuses it): closed, not open.
  CHECK_FALSE(
      decide(header(http::verb::get, {}), admin({}, "0.0.0.0"), false, sessions, now).allowed);
}

TEST_CASE("admin access: loopback host names, cookies and the cookie's attributes") {
  CHECK(loopback_host("127.0.0.1"));
  CHECK(loopback_host("127.1.2.3:80"));
  CHECK(loopback_host("LOCALHOST:8081"));
  CHECK(loopback_host("[::1]"));
  CHECK(loopback_host("[::1]:8081"));
  CHECK_FALSE(loopback_host("127.0.0.1.evil.example"));
  CHECK_FALSE(loopback_host("localhost.evil.example"));
  CHECK_FALSE(loopback_host("[::1]x"));
  CHECK_FALSE(loopback_host("10.0.0.1"));
  CHECK_FALSE(loopback_host(""));
  CHECK(cookie_value(header(http::verb::get, {{"Cookie", "a=1; fbr_session=xyz ; b=2"}}),
                     kSessionCookie) == "xyz");
  CHECK(cookie_value(header(http::verb::get, {{"Cookie", "xfbr_session=1"}}), kSessionCookie)
            .empty());
  CHECK(session_cookie("abc", 60, true) ==
        "fbr_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure");
  CHECK(session_cookie("abc", 60, false).find("Secure") == std::string::npos);
  CHECK(cleared_cookie(false).find("Max-Age=0") != std::string::npos);
  CHECK(token_valid("a", {"b", "a"}));
  CHECK_FALSE(token_valid("", {""}));
  CHECK_FALSE(token_valid("a", {}));
}

}  // namespace
}  // namespace fbr::server::admin
