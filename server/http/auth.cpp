#include "server/http/auth.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <stdexcept>

#include "core/text.hpp"

namespace fbr::server {
namespace {

/// Three base64url parts: worth a JWT check (anything else is only ever a wrong shared token).
bool looks_like_jwt(std::string_view token) {
  return std::count(token.begin(), token.end(), '.') == 2;
}

std::vector<jose::Alg> algs_from_names(const std::vector<std::string>& names) {
  std::vector<jose::Alg> algs;
  for (const auto& name : names) {
    const auto alg = jose::alg_from_name(name);
    if (!alg) throw std::runtime_error("jwt.algorithms: unsupported algorithm " + name);
    algs.push_back(*alg);
  }
  return algs;
}

/// Each client's secret from the variable it names, read once now.
std::vector<OAuthClientSecret> client_secrets(const config::OAuthServer& oauth) {
  std::vector<OAuthClientSecret> clients;
  for (std::size_t i = 0; i < oauth.clients.size(); ++i) {
    const auto& client = oauth.clients[i];
    const std::string what = "oauth_server.clients[" + std::to_string(i) + "] (" +
                             client.client_id + ").client_secret_env";
    const char* secret = std::getenv(client.client_secret_env.c_str());
    if (secret == nullptr) {
      throw std::runtime_error(what + " names the environment variable " +
                               client.client_secret_env + ", which is not set");
    }
    if (*secret == '\0') {
      throw std::runtime_error(what + " names the environment variable " +
                               client.client_secret_env + ", which is empty");
    }
    clients.push_back({client.client_id, secret});
  }
  return clients;
}

std::string cache_key(std::string_view token) {
  return core::sha256_hex(token);
}

}  // namespace

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<TokenCache::Entry> TokenCache::find(std::string_view token) const {
  const std::string key = cache_key(token);
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(key); it != entries_.end()) return it->second;
  return std::nullopt;
}

void TokenCache::insert(std::string_view token, Entry entry, std::int64_t now,
                        std::int64_t leeway_s) {
  std::string key = cache_key(token);
  std::lock_guard lock(mutex_);
  if (entries_.size() >= kCacheEntries) {
    std::erase_if(entries_, [&](const auto& item) {
      return !item.second.claims.exp || *item.second.claims.exp + leeway_s < now;
    });
  }
  if (entries_.size() >= kCacheEntries) entries_.clear();
  entries_.insert_or_assign(std::move(key), std::move(entry));
}

void TokenCache::erase(std::string_view token) {
  const std::string key = cache_key(token);
  std::lock_guard lock(mutex_);
  entries_.erase(key);
}

std::size_t TokenCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

Authenticator::Authenticator(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

std::shared_ptr<const Authenticator> Authenticator::build(const config::Config& config,
                                                          const Logger& log,
                                                          const Authenticator* previous) {
  auto auth = std::make_shared<Authenticator>(config.verification_tokens);
  const config::Jwt& jwt = config.jwt;
  if (jwt.enabled()) {
    auth->jwt_algs_ = algs_from_names(jwt.algorithms);
    auth->jwt_rules_.issuer = jwt.issuer;
    auth->jwt_rules_.audience = jwt.audience;
    auth->jwt_rules_.leeway = std::chrono::seconds(jwt.leeway_s);
    auth->jwt_rules_.required_scope = jwt.required_scope;
    JwksSource::Options options;
    options.file = jwt.jwks_url.empty() ? jwt.jwks_file : std::string();
    options.url = jwt.jwks_url;
    options.refresh = std::chrono::seconds(std::max<std::uint32_t>(1, jwt.jwks_refresh_s));
    const JwksSource* old = previous ? previous->jwks() : nullptr;
    if (old != nullptr && old->from_url() && old->options().url == options.url &&
        old->options().refresh == options.refresh) {
      auth->jwks_ = previous->jwks_;
    } else {
      auth->jwks_ = std::make_shared<JwksSource>(std::move(options), log);
    }
  }
  auth->keys_ = ServiceKeys::load(config);
  if (config.oauth_server.enabled()) {
    auth->endpoint_ = TokenEndpoint{client_secrets(config.oauth_server),
                                    auth->keys_.signing.front(), config.oauth_server.token_ttl_s};
    for (const auto& key : auth->keys_.signing) {
      if (std::find(auth->own_algs_.begin(), auth->own_algs_.end(), key.alg) ==
          auth->own_algs_.end()) {
        auth->own_algs_.push_back(key.alg);
      }
    }
    auth->own_rules_.issuer = kOwnIssuer;
    auth->own_rules_.audience = kOwnAudience;
    auth->own_rules_.leeway = kOwnLeeway;
  }
  return auth;
}

void Authenticator::stop() const {
  if (jwks_) jwks_->stop();
}

bool Authenticator::shared_token_valid(std::string_view token) const {
  return token_valid(token, tokens_);
}

bool Authenticator::known_client(std::string_view client_id) const {
  if (!endpoint_) return false;
  return std::any_of(endpoint_->clients.begin(), endpoint_->clients.end(),
                     [&](const auto& client) { return client.client_id == client_id; });
}

AuthCheck Authenticator::check(std::string_view token, std::int64_t now, bool may_refetch) const {
  AuthCheck result;
  if (token.empty()) {
    result.reason = "no token";
    return result;
  }
  if (shared_token_valid(token)) {
    result.via = AuthCheck::Via::kSharedToken;
    return result;
  }
  if (!looks_like_jwt(token) || (!jwks_ && !endpoint_)) {
    result.reason = "wrong token";
    return result;
  }
  if (const auto cached = cache_.find(token)) {
    const auto& rules = cached->own ? own_rules_ : jwt_rules_;
    const jose::Failure failure = jose::check_claims(cached->claims, rules, now);
    if (failure == jose::Failure::kNone) {
      if (cached->own && !known_client(cached->claims.sub)) {
        result.reason = "unknown_client";
        return result;
      }
      result.via = cached->own ? AuthCheck::Via::kOwnToken : AuthCheck::Via::kJwt;
      return result;
    }
    cache_.erase(token);
    result.reason = jose::reason_name(failure);
    return result;
  }
  return check_jwt(token, now, may_refetch);
}

AuthCheck Authenticator::check_jwt(std::string_view token, std::int64_t now,
                                   bool may_refetch) const {
  AuthCheck result;
  const auto header = jose::peek_header(token);
  if (!header) {
    result.reason = jose::reason_name(jose::Failure::kMalformed);
    return result;
  }
  // Our own token: its kid is one of our keys (thumbprints, or the kids our key files give).
  if (endpoint_ && !header->kid.empty() && keys_.trusted.find(header->kid) != nullptr) {
    const jose::Verified verified = jose::verify(token, keys_.trusted, own_algs_, own_rules_, now);
    if (!verified.ok()) {
      result.reason = jose::reason_name(verified.failure);
      return result;
    }
    if (!known_client(verified.claims.sub)) {
      result.reason = "unknown_client";
      return result;
    }
    return accepted(token, verified.claims, true, now);
  }
  if (!jwks_) {
    result.reason = jose::reason_name(jose::Failure::kKid);
    return result;
  }
  const auto keys = jwks_->keys();
  // An unknown kid may be a key the identity provider has just published: one refetch, waited
  // for by the caller, before the token is refused. Only an allowed alg is worth the wait.
  const auto alg = jose::alg_from_name(header->alg);
  const bool allowed_alg =
      alg && std::find(jwt_algs_.begin(), jwt_algs_.end(), *alg) != jwt_algs_.end();
  if (may_refetch && allowed_alg && keys->find(header->kid) == nullptr) {
    if (const auto generation = jwks_->refetch()) {
      result.await_keys = *generation;
      return result;
    }
  }
  const jose::Verified verified = jose::verify(token, *keys, jwt_algs_, jwt_rules_, now);
  if (!verified.ok()) {
    result.reason = jose::reason_name(verified.failure);
    return result;
  }
  return accepted(token, verified.claims, false, now);
}

AuthCheck Authenticator::accepted(std::string_view token, const jose::Claims& claims, bool own,
                                  std::int64_t now) const {
  const auto& rules = own ? own_rules_ : jwt_rules_;
  cache_.insert(token, {claims, own}, now, rules.leeway.count());
  AuthCheck result;
  result.via = own ? AuthCheck::Via::kOwnToken : AuthCheck::Via::kJwt;
  return result;
}

}  // namespace fbr::server
