#include "server/admin/access.hpp"

#include <openssl/rand.h>

#include <boost/beast/core/string.hpp>
#include <stdexcept>

#include "core/text.hpp"

namespace fbr::server::admin {
namespace {

// A bound on the logins held in memory: a script logging in in a loop cannot grow it for ever
// (the oldest-expiring go first).
constexpr std::size_t kMaxSessions = 10'000;

std::string random_id() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw std::runtime_error("no random bytes for a session");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  id.reserve(64);
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 0xf]);
  }
  return id;
}

/// The token of `Authorization: Bearer T`, or empty (admin tokens travel only there).
std::string bearer_token(const RequestHeader& header) {
  auto it = header.find(http::field::authorization);
  if (it == header.end()) return {};
  std::string_view value = core::trim_blanks(it->value());
  if (value.size() <= 7 || !boost::beast::iequals(value.substr(0, 7), "bearer ")) return {};
  return std::string(core::trim_blanks(value.substr(7)));
}

bool state_changing(http::verb method) {
  return method != http::verb::get && method != http::verb::head && method != http::verb::options;
}

Access refused(http::status status, std::string error) {
  Access access;
  access.status = status;
  access.error = std::move(error);
  return access;
}

Access allowed(bool via_cookie, bool open) {
  Access access;
  access.allowed = true;
  access.via_cookie = via_cookie;
  access.open = open;
  return access;
}

/// A browser's state-changing request must come from the page itself (a request without an
/// Origin is not a browser's cross-site one: curl, the CLI).
bool origin_matches(const RequestHeader& header, bool tls, bool required) {
  auto it = header.find(http::field::origin);
  if (it == header.end()) return !required;
  return it->value() == own_origin(header, tls);
}

}  // namespace

std::string Sessions::create(std::string_view token, std::chrono::seconds ttl,
                             Clock::time_point now) {
  std::string id = random_id();
  std::lock_guard lock(mutex_);
  prune(now);
  if (sessions_.size() >= kMaxSessions) {
    auto oldest = sessions_.begin();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.expires < oldest->second.expires) oldest = it;
    }
    sessions_.erase(oldest);
  }
  sessions_[id] = Entry{now + ttl, core::sha256_hex(token)};
  return id;
}

bool Sessions::valid(std::string_view id, const std::vector<std::string>& tokens,
                     Clock::time_point now) {
  if (id.size() != 64) return false;
  std::string fingerprint;
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return false;
    if (it->second.expires <= now) {
      sessions_.erase(it);
      return false;
    }
    fingerprint = it->second.token_sha256;
  }
  for (const auto& token : tokens) {
    if (core::constant_time_equal(core::sha256_hex(token), fingerprint)) return true;
  }
  return false;
}

void Sessions::forget(std::string_view id) {
  std::lock_guard lock(mutex_);
  if (auto it = sessions_.find(id); it != sessions_.end()) sessions_.erase(it);
}

std::size_t Sessions::size() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

void Sessions::prune(Clock::time_point now) {
  std::erase_if(sessions_, [&](const auto& entry) { return entry.second.expires <= now; });
}

std::string own_origin(const RequestHeader& header, bool tls) {
  return std::string(tls ? "https://" : "http://") + std::string(header[http::field::host]);
}

bool loopback_host(std::string_view host) {
  std::string name = core::lower_ascii(host);
  if (name.starts_with("[")) {
    const auto close = name.find(']');
    if (close == std::string::npos) return false;
    return name.substr(1, close - 1) == "::1" &&
           (close + 1 == name.size() || name[close + 1] == ':');
  }
  name = name.substr(0, name.find(':'));
  if (name == "localhost") return true;
  if (!name.starts_with("127.")) return false;
  int dots = 0;
  for (char c : name) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

std::string cookie_value(const RequestHeader& header, std::string_view name) {
  auto [first, last] = header.equal_range(http::field::cookie);
  for (auto it = first; it != last; ++it) {
    std::string_view rest = it->value();
    while (!rest.empty()) {
      const auto semi = rest.find(';');
      std::string_view pair = core::trim_blanks(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      const auto eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        return std::string(pair.substr(eq + 1));
      }
    }
  }
  return {};
}

bool token_valid(std::string_view token, const std::vector<std::string>& tokens) {
  bool any = false;
  // Every token is compared (no early exit): the time does not say which one matched.
  for (const auto& t : tokens)
    any |= !token.empty() && core::constant_time_equal(token, t);
  return any;
}

Access decide(const RequestHeader& header, const config::Admin& admin, bool tls, Sessions& sessions,
              Sessions::Clock::time_point now) {
  const bool changes = state_changing(header.method());
  if (admin.tokens.empty()) {
    // The start refuses this off loopback; a reload cannot move the listener, but fail closed.
    if (!admin.loopback()) return refused(http::status::unauthorized, "unauthorized");
    if (!loopback_host(header[http::field::host])) {
      return refused(http::status::forbidden, "host: the open console answers loopback names only");
    }
    if (changes && !origin_matches(header, tls, false)) {
      return refused(http::status::forbidden, "origin: must be " + own_origin(header, tls));
    }
    return allowed(false, true);
  }
  if (header.find(http::field::authorization) != header.end()) {
    // A token that is there but wrong is refused even with a valid cookie beside it.
    if (token_valid(bearer_token(header), admin.tokens)) return allowed(false, false);
    return refused(http::status::unauthorized, "unauthorized");
  }
  const std::string id = cookie_value(header, kSessionCookie);
  if (!id.empty() && sessions.valid(id, admin.tokens, now)) {
    if (changes && !origin_matches(header, tls, true)) {
      return refused(http::status::forbidden, "origin: must be " + own_origin(header, tls));
    }
    return allowed(true, false);
  }
  return refused(http::status::unauthorized, "unauthorized");
}

std::string session_cookie(std::string_view id, std::uint64_t ttl_s, bool tls) {
  return std::string(kSessionCookie) + "=" + std::string(id) +
         "; HttpOnly; SameSite=Strict; Path=/; Max-Age=" + std::to_string(ttl_s) +
         (tls ? "; Secure" : "");
}

std::string cleared_cookie(bool tls) {
  return std::string(kSessionCookie) + "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0" +
         (tls ? "; Secure" : "");
}

}  // namespace fbr::server::admin
