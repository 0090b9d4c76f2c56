#pragma once
// Who may use the admin listener, decided from the request's header alone (so a refusal costs no
// body read): an admin token (Authorization: Bearer), or the session cookie a login with one
// gave; a state-changing request that rides on the cookie must also carry the listener's own
// Origin (a cross-site form or fetch cannot). On a loopback listener without admin.tokens,
// anyone, as long as the Host is a loopback name (a DNS-rebinding page cannot read the API) and
// a browser's POST comes from the page itself.
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace fbr::server::admin {

namespace http = boost::beast::http;
using RequestHeader = http::request_header<>;

inline constexpr std::string_view kSessionCookie = "fbr_session";

/// The in-memory logins: a random 256-bit id each, with its expiry and the fingerprint of the
/// token it was made with (a token removed by a reload ends its sessions). Thread-safe.
class Sessions {
 public:
  using Clock = std::chrono::steady_clock;
  /// A new session for `token` (already checked), valid for `ttl`.
  std::string create(std::string_view token, std::chrono::seconds ttl, Clock::time_point now);
  /// The session is known, unexpired, and its token still among `tokens`.
  bool valid(std::string_view id, const std::vector<std::string>& tokens, Clock::time_point now);
  void forget(std::string_view id);
  [[nodiscard]] std::size_t size() const;

 private:
  struct Entry {
    Clock::time_point expires;
    std::string token_sha256;
  };
  void prune(Clock::time_point now);  // under mutex_
  mutable std::mutex mutex_;
  std::map<std::string, Entry, std::less<>> sessions_;
};

/// What the header allows.
struct Access {
  bool allowed = false;
  bool via_cookie = false;  ///< allowed by the session cookie (not a token, not open)
  bool open = false;        ///< loopback without tokens
  http::status status = http::status::unauthorized;  ///< when refused: 401 or 403
  std::string error;                                 ///< when refused: the answer's "error"
};

/// The listener's own origin for this request: scheme://Host.
std::string own_origin(const RequestHeader& header, bool tls);
/// Host is a loopback name (localhost, 127.x.x.x, [::1]), with or without a port.
bool loopback_host(std::string_view host);
/// The value of cookie `name` in the Cookie header, or empty.
std::string cookie_value(const RequestHeader& header, std::string_view name);
/// One of `tokens` equals `token` (each compared in constant time).
bool token_valid(std::string_view token, const std::vector<std::string>& tokens);

/// The decision for a request header. `admin`: the live settings (tokens, listen).
Access decide(const RequestHeader& header, const config::Admin& admin, bool tls, Sessions& sessions,
              Sessions::Clock::time_point now);

/// Set-Cookie for a new session / for clearing it.
std::string session_cookie(std::string_view id, std::uint64_t ttl_s, bool tls);
std::string cleared_cookie(bool tls);

}  // namespace fbr::server::admin
