#pragma once
// The built-in OAuth 2.0 token endpoint (POST /oauth/token), for Redox's client-credentials
// option when there is no identity provider: RFC 6749 §4.4 with client_secret_post or
// client_secret_basic (§2.3.1), answered with a JWT signed by the service's own key. Pure: the
// request and the endpoint's settings in, the Reply out (no socket, no clock, no randomness).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http/admission.hpp"
#include "server/http/reply.hpp"
#include "server/support/jose.hpp"

namespace fbr::server {

inline constexpr std::string_view kTokenPath = "/oauth/token";
inline constexpr std::string_view kJwksPath = "/.well-known/jwks.json";
/// The `iss` and `aud` of the tokens the endpoint issues (the inbound check expects both).
inline constexpr std::string_view kOwnIssuer = "fhir-bulk-receiver";
inline constexpr std::string_view kOwnAudience = "fhir-bulk-receiver";
/// Clock skew allowed on our own tokens: the clock that signs is the one that checks, so a few
/// seconds (not jwt.leeway_s) is enough, and a token is refused soon after its expires_in.
inline constexpr std::chrono::seconds kOwnLeeway{5};

struct OAuthClientSecret {
  std::string client_id;
  std::string secret;  ///< read from the environment at start or reload
};

struct TokenEndpoint {
  std::vector<OAuthClientSecret> clients;
  jose::PublishedKey signing;
  std::uint32_t ttl_s = 300;
};

struct TokenAnswer {
  Reply reply;
  std::string client_id;   ///< the authenticated client, when a token was issued
  std::string_view error;  ///< the OAuth error code when refused, for the log
};

/// The answer to `header` + `body` at kTokenPath. `jti` is the new token's unique ID.
TokenAnswer answer_token_request(const RequestHeader& header, std::string_view body,
                                 const TokenEndpoint& endpoint, std::int64_t now_unix_s,
                                 std::string_view jti);

/// application/x-www-form-urlencoded pairs ('+' is a space, %XX decoded); nullopt when a
/// percent escape is broken.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_form(std::string_view body);

/// The claims of a token issued to `client_id` (iss, sub, aud, iat, exp, jti), as JSON.
std::string own_token_claims(std::string_view client_id, std::int64_t now_unix_s,
                             std::uint32_t ttl_s, std::string_view jti);

}  // namespace fbr::server
