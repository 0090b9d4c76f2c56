#include "server/handlers/download/token_endpoint.hpp"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <stdexcept>

#include "core/text.hpp"
#include "server/handlers/download/token.hpp"
#include "server/support/ids.hpp"

namespace fbr::server::download {
namespace {

constexpr std::string_view kAssertionType =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
constexpr std::string_view kDiscoveryPath = "/.well-known/smart-configuration";
/// The longest a token request may take (the handler's idle_timeout_ms when that is shorter).
constexpr std::chrono::milliseconds kLongestRequest{30'000};
constexpr std::chrono::seconds kMostMargin{30};

std::string json_text(std::string_view text) {
  return "\"" + core::json_escape(text) + "\"";
}

std::string key_kind(const jose::Key& key) {
  return key.is_ec() ? "an EC key" : "an RSA key";
}

}  // namespace

TokenEndpoint::TokenEndpoint(const config::DownloadHandler& settings, const std::string& handler)
    : auth_(settings.auth) {
  const std::string where = "handler " + handler + ": auth";
  client_.policy = egress::Policy(settings.egress);
  client_.proxies = egress::environment_proxies();
  client_.connect_timeout = std::chrono::milliseconds(settings.connect_timeout_ms);
  client_.timeout = std::min(kLongestRequest, std::chrono::milliseconds(settings.idle_timeout_ms));
  if (auth_.client_id.empty()) throw std::runtime_error(where + " needs a client_id");
  if (auth_.token_url.empty() == auth_.fhir_base_url.empty()) {
    throw std::runtime_error(where + " needs exactly one of token_url and fhir_base_url");
  }
  for (const std::string* url : {&auth_.token_url, &auth_.fhir_base_url}) {
    if (!url->empty() && !core::is_absolute_http_url(*url)) {
      throw std::runtime_error(where + " " +
                               (url == &auth_.token_url ? "token_url" : "fhir_base_url") +
                               " is not an absolute http(s) URL");
    }
  }

  if (auth_.type == "smart_backend") {
    if (auth_.private_key_file.empty()) {
      throw std::runtime_error(where + " smart_backend needs a private_key_file");
    }
    const std::string& file = auth_.private_key_file.front();
    try {
      key_ = jose::Key::from_file(file);
    } catch (const std::exception& e) {
      // jose's messages name the file and what is wrong, never the key's bytes.
      throw std::runtime_error(where + " private_key_file " + file + ": " + e.what());
    }
    if (!key_->is_private()) {
      throw std::runtime_error(where + " private_key_file " + file +
                               " holds a public key: signing needs the private key");
    }
    if (auth_.alg.empty()) {
      alg_ = key_->default_alg();
    } else {
      const auto alg = jose::alg_from_name(auth_.alg);
      if (!alg) {
        throw std::runtime_error(where + " alg " + core::printable(auth_.alg) +
                                 " is not one of RS256, RS384, PS256, PS384, ES256, ES384");
      }
      alg_ = *alg;
    }
    if (!key_->fits(alg_)) {
      throw std::runtime_error(where + " alg " + std::string(jose::alg_name(alg_)) +
                               " does not fit the key of private_key_file " + file + " (" +
                               key_kind(*key_) + ")");
    }
    kid_ = auth_.kid.empty() ? key_->kid() : auth_.kid;
  } else if (auth_.type == "client_credentials") {
    if (auth_.client_secret_env.empty()) {
      throw std::runtime_error(where + " client_credentials needs client_secret_env");
    }
    const char* secret = std::getenv(auth_.client_secret_env.c_str());
    if (secret == nullptr || *secret == '\0') {
      throw std::runtime_error(where + " client_secret_env names the environment variable " +
                               auth_.client_secret_env +
                               (secret == nullptr ? ", which is not set" : ", which is empty"));
    }
    secret_ = secret;
  } else {
    throw std::runtime_error(where + " type " + core::printable(auth_.type) +
                             " is not smart_backend or client_credentials");
  }
}

std::chrono::seconds TokenEndpoint::usable_for(std::chrono::seconds expires_in) {
  return expires_in - std::min(kMostMargin, expires_in / 10);
}

TokenEndpoint::Token TokenEndpoint::get() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (cached_ && Clock::now() < cached_->renew_at) return cached_->token;
    if (!in_flight_) return fetch(lock);
    // Someone is asking already: its answer is ours too, a failure included.
    const std::uint64_t seen = answers_;
    answered_.wait(lock, [&] { return answers_ != seen; });
    if (last_failure_) std::rethrow_exception(last_failure_);
  }
}

TokenEndpoint::Token TokenEndpoint::renew(std::uint64_t refused) {
  {
    std::lock_guard lock(mutex_);
    if (cached_ && cached_->token.serial == refused) cached_.reset();
  }
  return get();
}

TokenEndpoint::Token TokenEndpoint::fetch(std::unique_lock<std::mutex>& lock) {
  in_flight_ = true;
  lock.unlock();
  std::exception_ptr failure;
  IssuedToken issued;
  const auto asked = Clock::now();
  try {
    issued = request_token();
  } catch (...) {
    failure = std::current_exception();
  }
  lock.lock();
  in_flight_ = false;
  ++answers_;
  last_failure_ = failure;
  if (!failure) {
    cached_ = Cached{Token{std::move(issued.access_token), ++serial_},
                     asked + usable_for(issued.expires_in)};
  }
  answered_.notify_all();
  if (failure) std::rethrow_exception(failure);
  return cached_->token;
}

std::string TokenEndpoint::token_url() {
  if (!auth_.token_url.empty()) return auth_.token_url;
  // Only the one request in flight gets here (fetch), so discovered_ needs no lock of its own.
  if (!discovered_.empty()) return discovered_;
  std::string base = auth_.fhir_base_url;
  while (base.ends_with('/'))
    base.pop_back();
  EndpointRequest request;
  request.what = "SMART configuration";
  request.url = base + std::string(kDiscoveryPath);
  const EndpointAnswer answer = call_endpoint(client_, request);
  discovered_ = discovered_token_endpoint(request, answer);
  return discovered_;
}

std::string TokenEndpoint::assertion(const std::string& audience) const {
  const std::int64_t now = std::time(nullptr);
  const std::string claims =
      "{\"iss\":" + json_text(auth_.client_id) + ",\"sub\":" + json_text(auth_.client_id) +
      ",\"aud\":" + json_text(audience) +
      ",\"exp\":" + std::to_string(now + kAssertionLife.count()) +
      ",\"iat\":" + std::to_string(now) + ",\"jti\":" + json_text(new_uuid()) + "}";
  jose::SignOptions options;
  options.alg = alg_;
  options.kid = kid_;
  options.jku = auth_.jku;
  try {
    return jose::sign(*key_, options, claims);
  } catch (const std::exception& e) {
    throw TokenError(std::string("signing the client assertion: ") + e.what());
  }
}

IssuedToken TokenEndpoint::request_token() {
  EndpointRequest request;
  try {
    request.url = token_url();
  } catch (const TokenError& e) {
    throw TokenError(std::string("discovering the token endpoint: ") + e.what(), e.permanent());
  }
  request.what = "token endpoint";
  request.form = "grant_type=client_credentials&scope=" + form_encode(auth_.scope);
  if (key_) {
    std::string signed_assertion = assertion(request.url);
    request.form += "&client_assertion_type=" + form_encode(kAssertionType) +
                    "&client_assertion=" + form_encode(signed_assertion);
    request.secrets.push_back(std::move(signed_assertion));
  } else {
    request.basic_user = form_encode(auth_.client_id);
    request.basic_password = form_encode(secret_);
    request.secrets = {secret_, request.basic_password};
  }
  return issued_token(request, call_endpoint(client_, request));
}

}  // namespace fbr::server::download
