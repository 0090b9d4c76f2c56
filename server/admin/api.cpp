#include "server/admin/api.hpp"

#include <rapidjson/document.h>

#include <boost/url/parse.hpp>
#include <exception>

#include "server/admin/assets.hpp"

namespace fbr::server::admin {
namespace asio = boost::asio;

namespace {

bool is_get(const Request& request) {
  return request.method() == http::verb::get || request.method() == http::verb::head;
}

/// A login or logout from a browser must come from the page (a login CSRF would sign the victim
/// in as someone else); without an Origin it is not a browser's cross-site request.
bool foreign_origin(const Request& request, bool tls) {
  auto it = request.find(http::field::origin);
  return it != request.end() && it->value() != own_origin(request, tls);
}

}  // namespace

Api::Api(const LiveConfig& live, Backend& store, Metrics& metrics, const Logger& log,
         asio::thread_pool& pool, bool tls)
    : live_(live), store_(store), metrics_(metrics), log_(log), pool_(pool), tls_(tls) {}

bool Api::public_route(http::verb method, std::string_view path) {
  // The raw path: a percent-encoded one is not public, and route() decides by the decoded
  // segments, whose first one is "assets" whenever the raw path starts with /assets/.
  if (path == "/api/login" || path == "/api/logout") return true;
  if (method != http::verb::get && method != http::verb::head) return false;
  return path == "/" || path.starts_with("/assets/") || path == "/api/session" ||
         path == "/healthz";
}

Access Api::access(const RequestHeader& header) {
  const auto config = live_.get();
  return decide(header, config->admin, tls_, sessions_, Sessions::Clock::now());
}

asio::awaitable<AdminReply> Api::handle(const Request& request, const RemoteInfo& remote) {
  try {
    co_return co_await route(request, remote);
  } catch (const std::exception& e) {
    log_.error("admin_failed", log_.fields().add("error", e.what()).add("remote", remote.addr));
  }
  co_return json_error(http::status::internal_server_error, "internal error");
}

asio::awaitable<AdminReply> Api::route(const Request& request, const RemoteInfo& remote) {
  auto url = boost::urls::parse_origin_form(request.target());
  if (!url) co_return json_error(http::status::bad_request, "bad request target");
  const std::vector<std::string> s(url->segments().begin(), url->segments().end());
  const auto params = url->params();
  const bool get = is_get(request);
  const bool post = request.method() == http::verb::post;
  const auto only = [&](bool allowed, std::string_view allow) {
    return allowed ? std::optional<AdminReply>() : method_not_allowed(allow);
  };

  if (s.empty() || (s.size() == 1 && s[0].empty()) || s[0] == "assets") {
    if (auto refused = only(get, "GET, HEAD")) co_return *refused;
    co_return page(s.empty() || s[0].empty() ? "/" : url->path());
  }
  if (s.size() == 1) {
    if (auto refused = only(get, "GET, HEAD")) co_return *refused;
    if (s[0] == "healthz") co_return json_ok(R"({"status":"ok"})");
    if (s[0] == "metrics") co_return metrics();
    if (s[0] == "readyz") co_return co_await readiness();
    co_return json_error(http::status::not_found, "not found");
  }
  if (s[0] != "api") co_return json_error(http::status::not_found, "not found");
  const std::string& what = s[1];
  if (s.size() == 2) {
    if (what == "session") {
      if (auto refused = only(get, "GET, HEAD")) co_return *refused;
      co_return session(request);
    }
    if (what == "login" || what == "logout") {
      if (auto refused = only(post, "POST")) co_return *refused;
      co_return what == "login" ? login(request, remote) : logout(request);
    }
    if (what == "events" || what == "quarantine" || what == "status") {
      if (auto refused = only(get, "GET, HEAD")) co_return *refused;
      if (what == "events") co_return co_await events(params);
      if (what == "quarantine") co_return co_await quarantine(params);
      co_return co_await status();
    }
  }
  if (s.size() == 3 && (what == "events" || what == "quarantine") && !s[2].empty()) {
    if (auto refused = only(get, "GET, HEAD")) co_return *refused;
    if (what == "events") co_return co_await event(s[2]);
    co_return co_await quarantined(s[2]);
  }
  if (s.size() == 4 && what == "events" && s[3] == "replay" && !s[2].empty()) {
    if (auto refused = only(post, "POST")) co_return *refused;
    co_return co_await replay(params, s[2], remote);
  }
  if (s.size() == 3 && what == "deliveries" && s[2] == "replay") {
    if (auto refused = only(post, "POST")) co_return *refused;
    co_return co_await bulk_replay(params, remote);
  }
  co_return json_error(http::status::not_found, "not found");
}

AdminReply Api::session(const Request& request) {
  const auto config = live_.get();
  const bool required = !config->admin.tokens.empty();
  const bool authenticated = access(request).allowed;
  return json_ok(std::string(R"({"authenticated":)") + (authenticated ? "true" : "false") +
                 R"(,"login_required":)" + (required ? "true" : "false") + "}");
}

AdminReply Api::login(const Request& request, const RemoteInfo& remote) {
  if (foreign_origin(request, tls_)) {
    return json_error(http::status::forbidden, "origin: must be " + own_origin(request, tls_));
  }
  rapidjson::Document body;
  body.Parse(request.body().data(), request.body().size());
  if (body.HasParseError() || !body.IsObject() || !body.HasMember("token") ||
      !body["token"].IsString()) {
    return json_error(http::status::bad_request, R"(token: required, as {"token":"..."})");
  }
  const std::string_view token(body["token"].GetString(), body["token"].GetStringLength());
  const auto config = live_.get();
  if (config->admin.tokens.empty()) return no_content();  // open: nothing to log in to
  if (!token_valid(token, config->admin.tokens)) {
    log_.warn("admin_login_refused", log_.fields().add("remote", remote.addr));
    return json_error(http::status::unauthorized, "unauthorized");
  }
  const auto ttl = std::chrono::seconds(config->admin.session_ttl_s);
  const std::string id = sessions_.create(token, ttl, Sessions::Clock::now());
  log_.info("admin_login", log_.fields().add("remote", remote.addr));
  AdminReply reply = no_content();
  reply.headers.emplace_back("Set-Cookie", session_cookie(id, config->admin.session_ttl_s, tls_));
  return reply;
}

AdminReply Api::logout(const Request& request) {
  if (foreign_origin(request, tls_)) {
    return json_error(http::status::forbidden, "origin: must be " + own_origin(request, tls_));
  }
  const std::string id = cookie_value(request, kSessionCookie);
  if (!id.empty()) sessions_.forget(id);
  AdminReply reply = no_content();
  reply.headers.emplace_back("Set-Cookie", cleared_cookie(tls_));
  return reply;
}

AdminReply Api::page(std::string_view path) {
  const Asset* asset = find_asset(path);
  if (asset == nullptr) return json_error(http::status::not_found, "not found");
  AdminReply reply;
  reply.body = std::string(asset->bytes);
  reply.content_type = std::string(asset->content_type);
  reply.page = true;
  return reply;
}

AdminReply Api::metrics() const {
  AdminReply reply;
  reply.body = metrics_.render();
  reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
  return reply;
}

}  // namespace fbr::server::admin
