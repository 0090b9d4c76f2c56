#pragma once
// Helpers for the authentication tests (auth_jwt_test.cpp, oauth_server_test.cpp): JWTs made
// and broken with a test key (server/support/jose.hpp, the same library the service uses, so
// only the test's claims and keys are its own), bearer requests, and the check that the server's
// log holds none of the secrets a test used.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/support/jose.hpp"
#include "tests/integration/harness.hpp"

namespace fbr::itest::auth {

namespace jose = fbr::server::jose;

/// Unix seconds now.
std::int64_t now_s();

/// The registered claims of a test token; an empty string or 0 leaves the claim out.
struct TestClaims {
  std::string iss = "https://idp.example.test";
  std::string aud = "fbr-webhook";
  std::string sub = "redox";
  std::string scope;
  std::int64_t exp = 0;  ///< 0: now + 300
  std::int64_t nbf = 0;
  std::int64_t iat = 0;  ///< 0: now
  std::string jti;       ///< empty: a new UUID (every token differs)
};
std::string claims_json(const TestClaims& claims);

/// A compact JWS of `claims` with this key, kid and algorithm.
std::string signed_jwt(const jose::Key& key, const std::string& kid, jose::Alg alg,
                       const TestClaims& claims = {});
/// base64url(header) "." base64url(payload) "." signature, as given (alg none, forgeries).
std::string raw_jwt(std::string_view header_json, std::string_view payload_json,
                    std::string_view signature_b64);
/// HS256 over header.payload with `secret` as the HMAC key (the public-key-as-secret attack).
std::string hs256_jwt(std::string_view secret, std::string_view header_json,
                      std::string_view payload_json);

/// {"keys": [...]} of the public halves of these keys, each with its kid and algorithm.
std::string jwks_of(const std::vector<jose::PublishedKey>& keys);

/// POST /webhook with Content-Type: application/json and `Authorization: Bearer token`.
HttpRequest post_with_bearer(std::string body, const std::string& token);

/// Fails the test when the server's log holds any of `secrets`.
void check_log_free_of(const Server& server, const std::vector<std::string>& secrets);

/// Waits for an `unauthorized` line with reason=`reason`; fails the test with the log otherwise.
void expect_refused_for(const Server& server, const std::string& reason);

}  // namespace fbr::itest::auth
