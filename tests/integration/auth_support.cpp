#include "tests/integration/auth_support.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>

namespace fbr::itest::auth {

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string claims_json(const TestClaims& c) {
  std::string out = "{";
  const auto add = [&out](std::string_view key, const std::string& json_value) {
    out += (out.size() > 1 ? "," : "") + std::string("\"") + std::string(key) + "\":" + json_value;
  };
  const auto quoted = [](const std::string& s) { return "\"" + s + "\""; };
  if (!c.iss.empty()) add("iss", quoted(c.iss));
  if (!c.aud.empty()) add("aud", quoted(c.aud));
  if (!c.sub.empty()) add("sub", quoted(c.sub));
  if (!c.scope.empty()) add("scope", quoted(c.scope));
  add("exp", std::to_string(c.exp != 0 ? c.exp : now_s() + 300));
  if (c.nbf != 0) add("nbf", std::to_string(c.nbf));
  add("iat", std::to_string(c.iat != 0 ? c.iat : now_s()));
  add("jti", quoted(c.jti.empty() ? new_log_id() : c.jti));
  return out + "}";
}

std::string signed_jwt(const jose::Key& key, const std::string& kid, jose::Alg alg,
                       const TestClaims& claims) {
  jose::SignOptions options;
  options.alg = alg;
  options.kid = kid;
  return jose::sign(key, options, claims_json(claims));
}

std::string raw_jwt(std::string_view header_json, std::string_view payload_json,
                    std::string_view signature_b64) {
  return jose::base64url_encode(header_json) + "." + jose::base64url_encode(payload_json) + "." +
         std::string(signature_b64);
}

std::string hs256_jwt(std::string_view secret, std::string_view header_json,
                      std::string_view payload_json) {
  const std::string input =
      jose::base64url_encode(header_json) + "." + jose::base64url_encode(payload_json);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &length);
  return input + "." +
         jose::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), length));
}

std::string jwks_of(const std::vector<jose::PublishedKey>& keys) {
  return jose::jwks_json(keys);
}

HttpRequest post_with_bearer(std::string body, const std::string& token) {
  HttpRequest request;
  request.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}};
  request.body = std::move(body);
  return request;
}

void check_log_free_of(const Server& server, const std::vector<std::string>& secrets) {
  const std::string log = server.log();
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    CHECK_MESSAGE(log.find(secret) == std::string::npos,
                  "the server's log holds a secret the test used (", secret.size(), " bytes)");
  }
}

void expect_refused_for(const Server& server, const std::string& reason) {
  const auto line = server.wait_for_line({"unauthorized", "reason=" + reason});
  CHECK_MESSAGE(line.has_value(), "no unauthorized line with reason=", reason, "\n",
                server.log_tail());
}

}  // namespace fbr::itest::auth
