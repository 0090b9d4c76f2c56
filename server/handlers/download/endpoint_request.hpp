#pragma once
// One request to an OAuth 2.0 endpoint of the download handler's `auth` (the token endpoint, or
// the SMART configuration it is discovered from), and what the answer means. The URL crosses the
// handler's egress policy like a file URL (allowed_hosts, the address rule checked on the
// address connected to, http and https only, no redirect followed); since the request carries a
// credential and the answer a token, plain http is held to the token rule too (a loopback host
// listed in allowed_hosts). No message here shows a credential, an assertion or a token: the
// answer's own words come only from `error` and `error_description`, or the start of a body that
// is not JSON, through core::printable, bounded, with the request's secrets cut out.
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "server/support/egress.hpp"

namespace fbr::server::download {

/// An answer larger than this is refused (a token answer is a few KiB at most).
inline constexpr std::size_t kMaxEndpointAnswer = 64 * 1024;

/// How the handler reaches its auth endpoints (its egress policy, proxies and timeouts).
struct EndpointClient {
  egress::Policy policy{config::Egress{}};
  std::vector<egress::Address> proxies;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds timeout{30'000};  ///< the whole request
};

struct EndpointRequest {
  std::string what;  ///< "token endpoint", "SMART configuration": how messages name it
  std::string url;
  std::string form;  ///< POSTed as application/x-www-form-urlencoded when not empty, else GET
  /// client_secret_basic (RFC 6749 §2.3.1): both already form-encoded; sent when user is set.
  std::string basic_user;
  std::string basic_password;
  /// What must never be shown (the assertion, the client secret): cut out of any message.
  std::vector<std::string> secrets;

  /// "<what> <url without query>", the start of every message.
  [[nodiscard]] std::string shown() const;
};

struct EndpointAnswer {
  long status = 0;
  std::string body;
};

/// Makes the request. Throws TokenError: permanent when the egress policy refuses the URL or an
/// address (no connection is made), transient for connection errors, timeouts, an answer past
/// kMaxEndpointAnswer or a redirect.
EndpointAnswer call_endpoint(const EndpointClient& client, const EndpointRequest& request);

/// A token endpoint's answer (RFC 6749 §5.1).
struct IssuedToken {
  std::string access_token;
  std::chrono::seconds expires_in{300};  ///< 300 when the answer has none
};
/// The token of a 200 answer; throws TokenError (transient) saying what is wrong otherwise: the
/// status with `error: error_description` (RFC 6749 §5.2), a body that is not JSON, no
/// access_token, a token_type other than bearer, an unusable expires_in.
IssuedToken issued_token(const EndpointRequest& request, const EndpointAnswer& answer);

/// The `token_endpoint` of a SMART configuration document's 200 answer; throws TokenError
/// (transient) otherwise.
std::string discovered_token_endpoint(const EndpointRequest& request, const EndpointAnswer& answer);

/// application/x-www-form-urlencoded: unreserved characters as they are, every other byte %XX.
std::string form_encode(std::string_view text);

}  // namespace fbr::server::download
