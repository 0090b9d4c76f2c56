#pragma once
// What jose.cpp (tokens, claims) and jose_keys.cpp (keys, key sets, PEM) share: the key's inside
// (a cjose JWK plus its public members, decoded once) and a strict JSON reader. Not for callers:
// they use jose.hpp.
#include <cjose/jwk.h>
#include <cjose/util.h>
#include <rapidjson/document.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "server/support/jose.hpp"

namespace fbr::server::jose {

struct Key::Impl {
  Impl(cjose_jwk_t* owned, bool is_private) : jwk(owned), priv(is_private) {}
  ~Impl() { cjose_jwk_release(jwk); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  cjose_jwk_t* jwk;
  bool priv;
  bool ec = false;
  std::size_t ec_bytes =
      0;  ///< 32 (P-256) or 48 (P-384): a coordinate's and half an ES signature's
  std::size_t rsa_bits = 0;
  std::string kid;         ///< the JWK's own, when it had one
  std::optional<Alg> alg;  ///< the JWK's "alg": the only one this key is for
  // The public members, base64url, as RFC 7638 wants them (EC coordinates at full length).
  std::string crv, x, y, n, e;
};

namespace detail {

/// Frees what cjose allocated (its JSON and base64 output).
struct CjoseFree {
  void operator()(void* p) const { cjose_get_dealloc()(p); }
};

/// Parses `text` as one JSON object: valid UTF-8, nothing after it, no member name twice at the
/// top level (another parser, e.g. cjose's Jansson, might take the other one), no recursion
/// (a hostile document cannot exhaust the stack). False otherwise.
bool parse_object(std::string_view text, rapidjson::Document& doc);

/// The member's string, nullopt when it is missing; `wrong_type` set when it is not a string.
std::optional<std::string> string_member(const rapidjson::Value& object, const char* name,
                                         bool& wrong_type);

/// Takes ownership of `owned` (released on failure too): reads its public members and checks it
/// is an RSA (2048 to 8192 bits) or EC P-256/P-384 key that fits `alg` when there is one. Throws.
std::shared_ptr<const Key::Impl> make_impl(cjose_jwk_t* owned, bool is_private, std::string kid,
                                           std::optional<Alg> alg);

/// A key from PEM text (jose_pem.cpp). Throws, never quoting the text.
Key key_from_pem(std::string_view pem);
/// The key as PEM: PKCS#8 for the private half, SubjectPublicKeyInfo for the public one.
std::string pem_of(const Key::Impl& key, bool private_half);

}  // namespace detail
}  // namespace fbr::server::jose
