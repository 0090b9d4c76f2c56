#pragma once
// The service's own keys: the built-in token endpoint's signing keys
// (oauth_server.signing_key_file, the first signs and all verify; or one generated on first start
// at data_dir/oauth-signing-key.pem, 0600, and reused), the KeySet its tokens are checked against,
// and the JWKS published at /.well-known/jwks.json (those keys plus every download handler's
// smart_backend private_key_file keys). Loaded at start and at each reload; every failure throws
// std::runtime_error naming the setting or the file, never quoting a key.
#include <filesystem>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "server/support/jose.hpp"

namespace fbr::server {

/// The file a generated signing key lives in, under data_dir.
inline constexpr const char* kGeneratedSigningKey = "oauth-signing-key.pem";

struct ServiceKeys {
  /// oauth_server's keys (empty when it is off); the first signs.
  std::vector<jose::PublishedKey> signing;
  /// What the token endpoint's tokens are verified with: the keys of `signing`.
  jose::KeySet trusted;
  /// {"keys": [...]} of every configured key's public half; empty when there are none.
  std::string jwks_json;

  /// The keys `config` names (and the generated one when oauth_server is on without keys).
  static ServiceKeys load(const config::Config& config);
};

/// The key in `file`, or a new ES384 key written there first (O_CREAT|O_EXCL, 0600, synced, then
/// linked into place so that a crash leaves no half-written key); throws naming the file.
jose::Key load_or_generate_key(const std::filesystem::path& file);

}  // namespace fbr::server
