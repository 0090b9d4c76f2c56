#include "server/support/service_keys.hpp"

#include <stdexcept>
#include <system_error>

#include "server/support/posix.hpp"

namespace fbr::server {
namespace {

jose::Key key_from(const std::string& file, const std::string& what) {
  try {
    return jose::Key::from_file(file);
  } catch (const std::exception& e) {
    throw std::runtime_error(what + ": " + e.what());
  }
}

jose::Alg alg_for(const jose::Key& key, const std::string& name, const std::string& what) {
  if (name.empty()) return key.default_alg();
  const auto alg = jose::alg_from_name(name);
  if (!alg) throw std::runtime_error(what + ": unsupported algorithm " + name);
  if (!key.fits(*alg)) throw std::runtime_error(what + ": the key cannot sign " + name);
  return *alg;
}

/// The download handlers' SMART Backend Services keys: the first one's kid is auth.kid when set.
/// A key that cannot be read or does not fit its alg is left out: the handler itself refuses it
/// at start or reload, with its own message (it owns those settings).
void add_download_keys(const config::Config& config, std::vector<jose::PublishedKey>& out) {
  for (const auto& handler : config.handlers) {
    const auto* download = std::get_if<config::DownloadHandler>(&handler.settings);
    if (download == nullptr || download->auth.type != "smart_backend") continue;
    const auto& auth = download->auth;
    for (std::size_t i = 0; i < auth.private_key_file.size(); ++i) {
      const std::string what = "handlers." + handler.name + ".auth.private_key_file[" +
                               std::to_string(i) + "] " + auth.private_key_file[i];
      try {
        jose::Key key = key_from(auth.private_key_file[i], what);
        const std::string kid = (i == 0 && !auth.kid.empty()) ? auth.kid : key.kid();
        out.push_back({key, kid, alg_for(key, auth.alg, what)});
      } catch (const std::runtime_error&) {
        continue;
      }
    }
  }
}

}  // namespace

jose::Key load_or_generate_key(const std::filesystem::path& file) {
  const std::string what = "oauth_server: the generated signing key " + file.string();
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) return key_from(file.string(), what);
  std::filesystem::create_directories(file.parent_path(), ec);
  const jose::Key key = jose::Key::generate(jose::Alg::kES384);
  // Never over a key another start wrote meanwhile: then that one is the key.
  bool written = false;
  try {
    written = posix::write_file_atomically(file.parent_path(), file.filename().string(),
                                           key.private_pem(), posix::Existing::kKeep);
  } catch (const std::exception& e) {
    throw std::runtime_error(what + ": " + e.what());
  }
  return written ? key : key_from(file.string(), what);
}

ServiceKeys ServiceKeys::load(const config::Config& config) {
  ServiceKeys keys;
  const auto& oauth = config.oauth_server;
  if (oauth.enabled()) {
    if (oauth.signing_key_file.empty()) {
      const jose::Key key = load_or_generate_key(config.data_dir / kGeneratedSigningKey);
      keys.signing.push_back({key, key.kid(), key.default_alg()});
    }
    for (std::size_t i = 0; i < oauth.signing_key_file.size(); ++i) {
      const std::string what =
          "oauth_server.signing_key_file[" + std::to_string(i) + "] " + oauth.signing_key_file[i];
      const jose::Key key = key_from(oauth.signing_key_file[i], what);
      if (!key.is_private()) throw std::runtime_error(what + ": not a private key");
      keys.signing.push_back({key, key.kid(), key.default_alg()});
    }
  }
  for (const auto& published : keys.signing)
    keys.trusted.add(published.kid, published.key, published.alg);
  std::vector<jose::PublishedKey> all = keys.signing;
  add_download_keys(config, all);
  if (!all.empty()) keys.jwks_json = jose::jwks_json(all);
  return keys;
}

}  // namespace fbr::server
