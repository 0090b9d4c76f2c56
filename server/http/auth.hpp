#pragma once
// Who may send events: the one place that decides a request's token. A token passes when it is
// one of the shared verification_tokens, or a JWT that verifies — against the identity
// provider's JWKS under the `jwt` rules (issuer, audience, algorithms, leeway, scope), or against
// our own keys when the built-in token endpoint (oauth_server) issued it. Built from a Config at
// start and at each reload (LiveAuth holds the current one, as LiveConfig does the config); both
// admission steps ask it, so the header-time and the body-time decisions agree.
//
// A JWT naming a kid the JWKS URL's set lacks is not refused at once: check() says which key
// generation to wait past (one refetch, rate-limited in JwksSource), the caller waits without
// blocking its thread, then checks again with may_refetch = false.
//
// Verified tokens are cached (SHA-256 of the token -> its claims, at most kCacheEntries), so a
// token reused for its lifetime costs a lookup, not a signature check; its claims are checked
// again on every request, so expiry holds.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "server/http/oauth_token.hpp"
#include "server/support/jose.hpp"
#include "server/support/jwks_source.hpp"
#include "server/support/log.hpp"
#include "server/support/service_keys.hpp"

namespace fbr::server {

/// How a request authenticated, or why not.
struct AuthCheck {
  enum class Via { kNone, kSharedToken, kJwt, kOwnToken };
  Via via = Via::kNone;
  /// Refused: "no token", "wrong token" (not a shared token, and no JWT check applies), or a
  /// jose::reason_name ("expired", "kid", ...), or "unknown_client" (our own token, for a client
  /// no longer configured). The log's reason=; never sent to the client.
  std::string_view reason;
  /// Set: not decided yet. Wait until the JWKS generation is past this (or a bounded time), then
  /// check again with may_refetch = false.
  std::optional<std::uint64_t> await_keys;

  [[nodiscard]] bool ok() const { return via != Via::kNone; }
  [[nodiscard]] bool pending() const { return await_keys.has_value(); }
};

/// Verified JWTs by the SHA-256 of the token: their claims and which rules they passed.
class TokenCache {
 public:
  static constexpr std::size_t kCacheEntries = 1024;
  struct Entry {
    jose::Claims claims;
    bool own = false;
  };
  [[nodiscard]] std::optional<Entry> find(std::string_view token) const;
  /// Full: first the entries expired by `now` (with `leeway`) go, then all of them.
  void insert(std::string_view token, Entry entry, std::int64_t now, std::int64_t leeway_s);
  void erase(std::string_view token);
  [[nodiscard]] std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

class Authenticator {
 public:
  /// Shared tokens only: no JWT is accepted (unit tests, the fuzz target).
  explicit Authenticator(std::vector<std::string> tokens);
  /// Everything `config` names: tokens, the jwt rules and their key source, oauth_server's
  /// clients (secrets read from the environment now) and our own keys. `previous`' JWKS URL
  /// source is kept when jwks_url and jwks_refresh_s are unchanged (a reload does not refetch).
  /// Throws std::runtime_error naming the setting, the file or the variable (never a value).
  static std::shared_ptr<const Authenticator> build(const config::Config& config, const Logger& log,
                                                    const Authenticator* previous = nullptr);

  /// The decision for `token` (as header_token() found it) at `now_unix_s`.
  AuthCheck check(std::string_view token, std::int64_t now_unix_s, bool may_refetch = true) const;
  /// Only the shared tokens (a verification challenge): constant time over all of them.
  [[nodiscard]] bool shared_token_valid(std::string_view token) const;

  /// The JWKS source (null without jwt): a waiter for check()'s await_keys watches it.
  [[nodiscard]] const JwksSource* jwks() const { return jwks_.get(); }
  /// oauth_server's endpoint (null when it is off).
  [[nodiscard]] const TokenEndpoint* token_endpoint() const {
    return endpoint_ ? &*endpoint_ : nullptr;
  }
  /// What /.well-known/jwks.json publishes (empty: 404).
  [[nodiscard]] const std::string& published_jwks() const { return keys_.jwks_json; }
  [[nodiscard]] const TokenCache& cache() const { return cache_; }
  /// Ends the JWKS URL's thread (shutdown).
  void stop() const;

 private:
  AuthCheck check_jwt(std::string_view token, std::int64_t now, bool may_refetch) const;
  AuthCheck accepted(std::string_view token, const jose::Claims& claims, bool own,
                     std::int64_t now) const;
  [[nodiscard]] bool known_client(std::string_view client_id) const;

  std::vector<std::string> tokens_;
  // The identity provider's tokens: on when jwks_ is set.
  std::shared_ptr<JwksSource> jwks_;
  std::vector<jose::Alg> jwt_algs_;
  jose::ClaimRules jwt_rules_;
  // Our own tokens: on when keys_.trusted is not empty.
  ServiceKeys keys_;
  std::vector<jose::Alg> own_algs_;
  jose::ClaimRules own_rules_;
  std::optional<TokenEndpoint> endpoint_;
  mutable TokenCache cache_;
};

/// The Authenticator in force; a reload swaps in a new one.
class LiveAuth {
 public:
  explicit LiveAuth(std::shared_ptr<const Authenticator> auth) : current_(std::move(auth)) {}
  [[nodiscard]] std::shared_ptr<const Authenticator> get() const { return current_.load(); }
  void set(std::shared_ptr<const Authenticator> auth) { current_.store(std::move(auth)); }

 private:
  std::atomic<std::shared_ptr<const Authenticator>> current_;
};

/// Unix seconds now (the clock every check uses).
std::int64_t unix_now();

}  // namespace fbr::server
