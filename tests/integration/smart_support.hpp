#pragma once
// A SMART Backend Services token endpoint for the download handler's `auth` tests
// (smart_auth_test.cpp): a small threaded HTTP/1.1 server on 127.0.0.1 that checks each client
// assertion the way an EHR's authorization server does — the signature with the client's
// REGISTERED public JWKS (jose: verify_signature), an allowed alg, aud == its own token URL,
// exp − now ≤ 300 s and not passed, iss == sub == the client_id, a jti never seen before,
// grant_type and client_assertion_type — or, for client_credentials, HTTP Basic with the
// registered secret. It issues random bearer tokens that it remembers (a file server asks
// valid()), can revoke them, can be told to refuse every client or to answer anything at all,
// serves /fhir/.well-known/smart-configuration for discovery, and counts what it is asked.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/support/jose.hpp"
#include "tests/integration/dispatch_support.hpp"

namespace fbr::itest::smart {

/// A test client's key pair: the private half as PEM for the handler's private_key_file, the
/// public half as the JWKS the token server registers.
struct ClientKey {
  explicit ClientKey(fbr::server::jose::Alg alg = fbr::server::jose::Alg::kES384);
  fbr::server::jose::Key key;
  fbr::server::jose::Alg alg;
  std::string kid;
  std::string private_pem() const { return key.private_pem(); }
  std::string jwks() const;
};

class TokenServer {
 public:
  TokenServer();
  ~TokenServer();
  TokenServer(const TokenServer&) = delete;
  TokenServer& operator=(const TokenServer&) = delete;

  unsigned short port() const { return port_; }
  std::string url(std::string_view path) const;
  /// http://127.0.0.1:<port>/token
  std::string token_url() const { return url("/token"); }
  /// http://127.0.0.1:<port>/fhir: its /.well-known/smart-configuration names token_url()
  /// (or what set_discovered_endpoint() says).
  std::string fhir_base_url() const { return url("/fhir"); }

  /// smart_backend: the client's public keys.
  void register_jwks(const std::string& client_id, const std::string& jwks_json);
  /// client_credentials: the client's secret (checked in HTTP Basic).
  void register_secret(const std::string& client_id, const std::string& secret);
  void set_discovered_endpoint(std::string url);

  /// Every later token request is answered 401 {"error":"invalid_client", "error_description":
  /// description}, whatever it carries.
  void refuse_clients(std::string description);
  /// Every later token request is answered with exactly this (e.g. not JSON, a huge body).
  void answer_with(int status, std::string body, std::string content_type = "application/json");
  /// Token requests wait this long before their answer (a slow endpoint).
  void set_delay(std::chrono::milliseconds delay);
  /// Back to checking and issuing.
  void answer_normally();

  /// Whether `token` was issued here and not revoked.
  bool valid(std::string_view token) const;
  /// For download::Resource::bearer_check.
  std::function<bool(std::string_view)> checker() const;
  void revoke_all();

  std::size_t token_requests() const { return token_requests_; }
  std::size_t discovery_requests() const { return discovery_requests_; }
  std::vector<std::string> issued() const;
  /// The client assertions received (valid or not).
  std::vector<std::string> assertions() const;
  /// Why requests were refused, in the order they came (empty when none was).
  std::vector<std::string> refusals() const;
  /// The decoded form fields of the token requests, in order.
  std::vector<std::map<std::string, std::string>> forms() const;
  /// Everything that must never appear in a log, an error or check-config: the tokens issued,
  /// the assertions and the registered secrets.
  std::vector<std::string> secrets() const;

  void stop();

 private:
  struct Reply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
  };
  void accept_loop();
  void serve(int fd);
  Reply answer_token(const dispatch::TargetRequest& request);
  /// nullopt: the client is who it says (a token is issued); else the refusal.
  std::optional<Reply> check_assertion(const std::map<std::string, std::string>& form);
  std::optional<Reply> check_basic(const std::string& authorization);
  Reply issue();
  Reply refuse(std::string why);

  int listen_fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> token_requests_{0};
  std::atomic<std::size_t> discovery_requests_{0};

  mutable std::mutex mutex_;
  std::condition_variable stop_cv_;
  std::map<std::string, fbr::server::jose::KeySet> jwks_;
  std::map<std::string, std::string> client_secrets_;
  std::string discovered_;
  std::optional<Reply> fixed_;
  std::chrono::milliseconds delay_{0};
  std::set<std::string> valid_;
  std::vector<std::string> issued_;
  std::vector<std::string> assertions_;
  std::set<std::string> jtis_;
  std::vector<std::string> refusals_;
  std::vector<std::map<std::string, std::string>> forms_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

/// application/x-www-form-urlencoded → fields (the last of a repeated name wins).
std::map<std::string, std::string> parse_form(std::string_view body);

}  // namespace fbr::itest::smart
