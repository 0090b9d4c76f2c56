#pragma once
// The download handler's OAuth 2.0 client (`auth`): access tokens from a token endpoint, for the
// file servers of events that say requiresAccessToken.
//
// - smart_backend (SMART Backend Services): a JWT client assertion signed with the handler's
//   private key (private_key_file[0], read at start), iss = sub = client_id, aud = the token URL,
//   exp at most 5 minutes ahead, iat, a random jti; header kid (and jku when set). POSTed with
//   grant_type=client_credentials, scope, client_assertion_type (jwt-bearer) and
//   client_assertion.
// - client_credentials: client_id and the secret of client_secret_env (read at start) as HTTP
//   Basic (client_secret_basic, RFC 6749 §2.3.1), grant_type=client_credentials and scope.
//
// The token URL is token_url, or the token_endpoint of <fhir_base_url>/.well-known/
// smart-configuration, discovered once and kept. Both cross the handler's egress policy
// (endpoint_request.hpp). The token is kept per handler, across deliveries, until shortly before
// it expires (expires_in less a tenth, at most 30 s); one request at a time asks for it, every
// other caller (the parallel files of one delivery, and other deliveries) waits for that answer,
// so a delivery of 40 files makes one token request. After a 401 from a file server, renew()
// drops the cached token only if it is the one refused (another caller may have renewed it).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "server/handlers/download/endpoint_request.hpp"
#include "server/support/jose.hpp"

namespace fbr::server::download {

/// exp − iat of a client assertion (SMART: no more than five minutes).
inline constexpr std::chrono::seconds kAssertionLife{270};
/// A token answer without expires_in is taken to last this long.
inline constexpr std::chrono::seconds kDefaultTokenLife{300};

class TokenEndpoint {
 public:
  /// Reads the key (smart_backend) or the secret (client_credentials) now; throws
  /// std::runtime_error naming the handler and the file or variable (never a key's bytes) when
  /// it is unusable, or the algorithm does not fit the key.
  TokenEndpoint(const config::DownloadHandler& settings, const std::string& handler);

  struct Token {
    std::string value;
    std::uint64_t serial = 0;  ///< which token: counts up with each one received
  };
  /// The cached token while it is fresh, else a new one (one request for all callers). Throws
  /// TokenError (never showing a token, the assertion or the secret).
  Token get();
  /// After a 401 with token `refused`: drops it if it is still the cached one, then get().
  Token renew(std::uint64_t refused);

  /// How long a token that lasts `expires_in` is used: less a tenth of it, at most 30 s less.
  static std::chrono::seconds usable_for(std::chrono::seconds expires_in);

 private:
  Token fetch(std::unique_lock<std::mutex>& lock);
  IssuedToken request_token();
  [[nodiscard]] std::string token_url();
  [[nodiscard]] std::string assertion(const std::string& audience) const;

  config::DownloadAuth auth_;
  EndpointClient client_;
  std::optional<jose::Key> key_;  ///< smart_backend
  jose::Alg alg_ = jose::Alg::kES384;
  std::string kid_;
  std::string secret_;      ///< client_credentials
  std::string discovered_;  ///< the token URL from fhir_base_url, once known

  using Clock = std::chrono::steady_clock;
  struct Cached {
    Token token;
    Clock::time_point renew_at;
  };
  std::mutex mutex_;
  std::condition_variable answered_;
  bool in_flight_ = false;
  std::uint64_t answers_ = 0;        ///< token requests finished (for waiters)
  std::exception_ptr last_failure_;  ///< of the last one, when it failed
  std::optional<Cached> cached_;
  std::uint64_t serial_ = 0;
};

}  // namespace fbr::server::download
