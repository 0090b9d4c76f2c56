// Keys: generated, read from a JWK (or PEM, in jose_pem.cpp), thumbprinted, published; and the
// key set a verifier looks keys up in. A JWKS from outside may hold keys we cannot or must not
// use (symmetric, for encryption, other curves): those are skipped, never half-used.
#include <cjose/base64.h>
#include <cjose/util.h>
#include <openssl/evp.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "server/support/jose_impl.hpp"

namespace fbr::server::jose {
namespace {

// Bigger than any key file or JWK we would be given; a bound on what is parsed at all.
constexpr std::size_t kMaxKeyText = 64 * 1024;
// A JWKS is trusted configuration or a trusted URL's answer; still, bounded.
constexpr std::size_t kMaxKeysInSet = 64;

std::string_view trim(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

std::string json_string(const rapidjson::Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

// A base64url member of cjose's own public JWK, EC coordinates left-padded to the curve's size
// (RFC 7518 §6.2.1.2: full length; the thumbprint depends on it).
std::string member(const rapidjson::Document& jwk, const char* name, std::size_t pad_to = 0) {
  bool wrong = false;
  const auto value = detail::string_member(jwk, name, wrong);
  auto bytes = value ? base64url_decode(*value) : std::nullopt;
  if (!bytes || bytes->empty() || (pad_to != 0 && bytes->size() > pad_to))
    throw std::runtime_error(std::string("the key has no usable \"") + name + "\"");
  if (pad_to > bytes->size()) bytes->insert(0, pad_to - bytes->size(), '\0');
  return base64url_encode(*bytes);
}

Key from_jwk(std::string_view text) {
  rapidjson::Document doc;
  if (!detail::parse_object(text, doc)) throw std::runtime_error("the JWK is not a JSON object");
  bool wrong = false;
  const auto kty = detail::string_member(doc, "kty", wrong);
  const auto use = detail::string_member(doc, "use", wrong);
  const auto alg_text = detail::string_member(doc, "alg", wrong);
  const auto kid = detail::string_member(doc, "kid", wrong);
  if (wrong) throw std::runtime_error("the JWK has a member of the wrong type");
  if (!kty || (*kty != "RSA" && *kty != "EC"))
    throw std::runtime_error("the JWK's kty is not RSA or EC");
  if (use && *use != "sig") throw std::runtime_error("the JWK is not for signatures (use)");
  std::optional<Alg> alg;
  if (alg_text) {
    alg = alg_from_name(*alg_text);
    if (!alg) throw std::runtime_error("the JWK's alg is not one of RS/PS/ES 256/384");
  }
  if (const auto ops = doc.FindMember("key_ops"); ops != doc.MemberEnd()) {
    bool verify_or_sign = false;
    if (ops->value.IsArray())
      for (const auto& op : ops->value.GetArray())
        verify_or_sign |= op.IsString() && (std::string_view(op.GetString()) == "verify" ||
                                            std::string_view(op.GetString()) == "sign");
    if (!verify_or_sign) throw std::runtime_error("the JWK's key_ops are not for signatures");
  }
  cjose_err err{};
  cjose_jwk_t* jwk = cjose_jwk_import(text.data(), text.size(), &err);
  if (jwk == nullptr) throw std::runtime_error("the JWK is not a valid " + *kty + " key");
  return Key(detail::make_impl(jwk, doc.HasMember("d"), kid.value_or(""), alg));
}

}  // namespace

namespace detail {

std::shared_ptr<const Key::Impl> make_impl(cjose_jwk_t* owned, bool is_private, std::string kid,
                                           std::optional<Alg> alg) {
  auto impl = std::make_shared<Key::Impl>(owned, is_private);
  impl->kid = std::move(kid);
  impl->alg = alg;
  cjose_err err{};
  const auto kty = cjose_jwk_get_kty(owned, &err);
  const std::unique_ptr<char, detail::CjoseFree> json(cjose_jwk_to_json(owned, false, &err));
  rapidjson::Document pub;
  if (!json || !parse_object(json.get(), pub)) throw std::runtime_error("cannot read the key");
  if (kty == CJOSE_JWK_KTY_EC) {
    const auto curve = cjose_jwk_EC_get_curve(owned, &err);
    if (curve != CJOSE_JWK_EC_P_256 && curve != CJOSE_JWK_EC_P_384)
      throw std::runtime_error("the EC key's curve is not P-256 or P-384");
    impl->ec = true;
    impl->ec_bytes = curve == CJOSE_JWK_EC_P_256 ? 32 : 48;
    impl->crv = curve == CJOSE_JWK_EC_P_256 ? "P-256" : "P-384";
    impl->x = member(pub, "x", impl->ec_bytes);
    impl->y = member(pub, "y", impl->ec_bytes);
  } else if (kty == CJOSE_JWK_KTY_RSA) {
    impl->rsa_bits = cjose_jwk_get_keysize(owned, &err);
    // Below 2048 bits is refused by RFC 7518 §3.3; above 8192 only costs verification time.
    if (impl->rsa_bits < 2048 || impl->rsa_bits > 8192)
      throw std::runtime_error("the RSA key is not 2048 to 8192 bits long");
    impl->n = member(pub, "n");
    impl->e = member(pub, "e");
  } else {
    throw std::runtime_error("the key is not an RSA or EC key");
  }
  if (alg && !Key(impl).fits(*alg))
    throw std::runtime_error("the key's alg does not fit its type or curve");
  return impl;
}

}  // namespace detail

Key Key::generate(Alg alg) {
  cjose_err err{};
  cjose_jwk_t* jwk = nullptr;
  switch (alg) {
    case Alg::kES256:
      jwk = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
      break;
    case Alg::kES384:
      jwk = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_384, &err);
      break;
    default: {
      static constexpr std::array<std::uint8_t, 3> kF4{0x01, 0x00, 0x01};  // 65537
      jwk = cjose_jwk_create_RSA_random(2048, kF4.data(), kF4.size(), &err);
    }
  }
  if (jwk == nullptr) throw std::runtime_error("key generation failed");
  return Key(detail::make_impl(jwk, true, "", std::nullopt));
}

Key Key::parse(std::string_view text) {
  text = trim(text);
  if (text.size() > kMaxKeyText) throw std::runtime_error("the key text is too long");
  if (text.starts_with("{")) return from_jwk(text);
  if (text.starts_with("-----BEGIN ")) return detail::key_from_pem(text);
  throw std::runtime_error("the key is neither PEM nor a JWK");
}

Key Key::from_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the key file " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return parse(text.str());
  } catch (const std::exception& e) {
    throw std::runtime_error("key file " + file.string() + ": " + e.what());
  }
}

bool Key::is_private() const {
  return impl_->priv;
}
bool Key::is_ec() const {
  return impl_->ec;
}

bool Key::fits(Alg alg) const {
  if (impl_->alg && *impl_->alg != alg) return false;
  switch (alg) {
    case Alg::kES256:
      return impl_->ec && impl_->ec_bytes == 32;
    case Alg::kES384:
      return impl_->ec && impl_->ec_bytes == 48;
    default:
      return !impl_->ec;
  }
}

Alg Key::default_alg() const {
  if (impl_->alg) return *impl_->alg;
  if (impl_->ec) return impl_->ec_bytes == 32 ? Alg::kES256 : Alg::kES384;
  return Alg::kRS384;
}

std::string Key::kid() const {
  return impl_->kid.empty() ? thumbprint() : impl_->kid;
}

std::string Key::thumbprint() const {
  // RFC 7638 §3.2: the required members only, in lexicographic order, no whitespace. The values
  // are base64url, so nothing in them needs escaping.
  const auto& k = *impl_;
  const std::string canonical =
      k.ec ? R"({"crv":")" + k.crv + R"(","kty":"EC","x":")" + k.x + R"(","y":")" + k.y + R"("})"
           : R"({"e":")" + k.e + R"(","kty":"RSA","n":")" + k.n + R"("})";
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(canonical.data(), canonical.size(), digest.data(), &size, EVP_sha256(), nullptr) !=
      1)
    throw std::runtime_error("SHA-256 failed");
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), size));
}

std::string Key::public_jwk(std::string_view kid, Alg alg) const {
  if (!fits(alg)) throw std::runtime_error("the key does not fit " + std::string(alg_name(alg)));
  const auto& k = *impl_;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  auto pair = [&w](std::string_view name, std::string_view value) {
    w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  pair("kty", k.ec ? "EC" : "RSA");
  if (k.ec) {
    pair("crv", k.crv);
    pair("x", k.x);
    pair("y", k.y);
  } else {
    pair("n", k.n);
    pair("e", k.e);
  }
  pair("kid", kid);
  pair("alg", alg_name(alg));
  pair("use", "sig");
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

std::string Key::private_pem() const {
  if (!impl_->priv) throw std::runtime_error("the key is public: there is no private PEM");
  return detail::pem_of(*impl_, true);
}

std::string Key::public_pem() const {
  return detail::pem_of(*impl_, false);
}

std::string jwks_json(const std::vector<PublishedKey>& keys) {
  std::string out = R"({"keys":[)";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += ',';
    out += keys[i].key.public_jwk(keys[i].kid, keys[i].alg);
  }
  return out + "]}";
}

KeySet KeySet::parse(std::string_view json) {
  rapidjson::Document doc;
  if (!detail::parse_object(json, doc)) throw std::runtime_error("the JWKS is not a JSON object");
  const auto keys = doc.FindMember("keys");
  if (keys == doc.MemberEnd() || !keys->value.IsArray())
    throw std::runtime_error("the JWKS has no \"keys\" array");
  KeySet set;
  for (const auto& jwk : keys->value.GetArray()) {
    if (set.size() == kMaxKeysInSet) break;
    if (!jwk.IsObject()) continue;
    try {
      auto key = from_jwk(json_string(jwk));
      set.add(key.kid(), key, key.impl().alg);
    } catch (const std::runtime_error&) {
      // Not a key we verify with (oct, enc, P-521, incomplete): skipped, as RFC 7517 §5 allows.
    }
  }
  return set;
}

void KeySet::add(std::string kid, Key key, std::optional<Alg> alg) {
  entries_.push_back(Entry{std::move(kid), std::move(key), alg});
}

const Key* KeySet::find(std::string_view kid, std::optional<Alg>* alg) const {
  const Entry* found = nullptr;
  if (kid.empty()) {
    if (entries_.size() == 1) found = &entries_.front();
  } else {
    for (const auto& entry : entries_)
      if (entry.kid == kid) {
        found = &entry;
        break;
      }
  }
  if (found == nullptr) return nullptr;
  if (alg != nullptr) *alg = found->alg;
  return &found->key;
}

}  // namespace fbr::server::jose
