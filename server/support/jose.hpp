#pragma once
// JOSE for both directions of authentication: keys (PEM or JWK, generated, thumbprinted,
// published as a JWKS), compact JWS signing and verification, and the registered JWT claims. The
// cryptography is Debian's libcjose (JWS, JWK) over OpenSSL; nothing here is hand-rolled crypto.
// Only RS256/384, PS256/384 and ES256/384 exist here: `none` and every HMAC algorithm are refused
// before a key is looked at, so a public key can never be used as an HMAC secret. No function
// puts a token, a key or a claim's value in an exception message.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fbr::server::jose {

enum class Alg { kRS256, kRS384, kPS256, kPS384, kES256, kES384 };

/// "RS256" -> Alg; nullopt for anything else ("none", "HS256", "ES512", ...).
std::optional<Alg> alg_from_name(std::string_view name);
std::string_view alg_name(Alg alg);
/// Every supported algorithm, in the order above.
std::span<const Alg> all_algs();

/// A key: private (signs and verifies) or public (verifies). Cheap to copy (shared, immutable).
class Key {
 public:
  /// A new private key for `alg`: EC P-256 or P-384, or RSA 2048 bits (RS*, PS*).
  static Key generate(Alg alg);
  /// A private or public key from PEM (PKCS#8, SEC1 EC, PKCS#1 RSA, SubjectPublicKeyInfo) or a
  /// JWK (JSON object). Throws std::runtime_error saying what is wrong, never quoting the text.
  static Key parse(std::string_view text);
  /// parse() of a file's contents; the message names the file.
  static Key from_file(const std::filesystem::path& file);

  [[nodiscard]] bool is_private() const;
  [[nodiscard]] bool is_ec() const;
  /// True when this key can make or check signatures of `alg` (EC curve or RSA matches).
  [[nodiscard]] bool fits(Alg alg) const;
  /// ES256 for P-256, ES384 for P-384, RS384 for RSA.
  [[nodiscard]] Alg default_alg() const;
  /// The JWK's own "kid" when it had one, else the thumbprint.
  [[nodiscard]] std::string kid() const;
  /// RFC 7638: base64url(SHA-256 of the canonical public JWK).
  [[nodiscard]] std::string thumbprint() const;
  /// The public JWK as a JSON object, with "kid", "alg" and "use": "sig".
  [[nodiscard]] std::string public_jwk(std::string_view kid, Alg alg) const;
  /// The private key as PKCS#8 PEM (for `keys generate`); throws for a public key.
  [[nodiscard]] std::string private_pem() const;
  /// The public key as SubjectPublicKeyInfo PEM.
  [[nodiscard]] std::string public_pem() const;

  struct Impl;
  explicit Key(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  [[nodiscard]] const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

/// A key as published: with its kid and algorithm.
struct PublishedKey {
  Key key;
  std::string kid;
  Alg alg;
};
/// {"keys": [...]} of the public halves.
std::string jwks_json(const std::vector<PublishedKey>& keys);

/// Public keys by kid, from a JWKS document or from our own keys.
class KeySet {
 public:
  /// Parses {"keys": [...]}; keys it cannot verify with (oct, "use": "enc", unknown kty or
  /// curve) are skipped. Throws std::runtime_error when the document is not a JWKS.
  static KeySet parse(std::string_view json);

  void add(std::string kid, Key key, std::optional<Alg> alg = std::nullopt);
  /// The key with this kid; with an empty kid, the only key when there is exactly one.
  [[nodiscard]] const Key* find(std::string_view kid, std::optional<Alg>* alg = nullptr) const;
  [[nodiscard]] std::size_t size() const { return entries_.size(); }
  [[nodiscard]] bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    std::string kid;
    Key key;
    std::optional<Alg> alg;  ///< the JWK's "alg", when it named one
  };
  std::vector<Entry> entries_;
};

/// The JOSE header of a compact JWS, decoded without verifying anything.
struct Header {
  std::string alg;  ///< as sent
  std::string kid;
  std::string typ;
  std::string jku;
};
std::optional<Header> peek_header(std::string_view token);

struct SignOptions {
  Alg alg = Alg::kES384;
  std::string kid;
  std::string jku;  ///< omitted when empty
  std::string typ = "JWT";
};
/// A compact JWS of `claims_json` (a JSON object). Throws std::runtime_error when the key cannot
/// sign `alg`.
std::string sign(const Key& key, const SignOptions& options, std::string_view claims_json);

/// Why a token was refused; the names are the log's `reason=` values.
enum class Failure {
  kNone,
  kMalformed,    ///< not three base64url parts, header or payload not a JSON object
  kAlg,          ///< alg not allowed (none, HS*, or not in the configured list), or not the key's
  kKid,          ///< no key with that kid
  kSignature,    ///< the signature does not verify
  kExpired,      ///< exp (plus leeway) has passed, or there is no exp
  kNotYetValid,  ///< nbf or iat (minus leeway) is in the future
  kIssuer,
  kAudience,
  kScope,
};
std::string_view reason_name(Failure failure);

/// The registered claims of a JWT payload.
struct Claims {
  std::string iss;
  std::string sub;
  std::vector<std::string> aud;  ///< a string or an array of strings
  std::string jti;
  std::string scope;
  std::optional<std::int64_t> exp;
  std::optional<std::int64_t> nbf;
  std::optional<std::int64_t> iat;
};
/// The claims of a JSON object (nullopt when it is not one, or a registered claim has the wrong
/// type).
std::optional<Claims> parse_claims(std::string_view json);

struct ClaimRules {
  std::string issuer;    ///< empty: any
  std::string audience;  ///< empty: any
  std::chrono::seconds leeway{60};
  std::string required_scope;  ///< empty: none
};
Failure check_claims(const Claims& claims, const ClaimRules& rules, std::int64_t now_unix_s);

struct Verified {
  Failure failure = Failure::kNone;
  Header header;
  Claims claims;  ///< when the signature verified
  [[nodiscard]] bool ok() const { return failure == Failure::kNone; }
};
/// The signature only: the header's alg must be in `allowed` and fit the key found by kid in
/// `keys`; then the claims are parsed (not checked).
Verified verify_signature(std::string_view token, const KeySet& keys, std::span<const Alg> allowed);
/// verify_signature, then check_claims.
Verified verify(std::string_view token, const KeySet& keys, std::span<const Alg> allowed,
                const ClaimRules& rules, std::int64_t now_unix_s);

std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace fbr::server::jose
