// PEM in and out, through OpenSSL 3's provider API: a PEM key becomes cjose key specs (its
// numbers, read with EVP_PKEY_get_bn_param), and a cjose key becomes an EVP_PKEY again
// (OSSL_PARAM_BLD, EVP_PKEY_fromdata) to be written as PKCS#8 or SubjectPublicKeyInfo. Private
// numbers are wiped from our buffers once used.
#include <cjose/util.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "server/support/jose_impl.hpp"

namespace fbr::server::jose::detail {
namespace {

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_clear_free(p); }
};
struct CtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct BldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct DecoderFree {
  void operator()(OSSL_DECODER_CTX* p) const { OSSL_DECODER_CTX_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

// Bytes that may be a private number: wiped when dropped.
struct Secret {
  std::vector<std::uint8_t> bytes;
  Secret() = default;
  explicit Secret(std::size_t n) : bytes(n) {}
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&&) = default;
  Secret& operator=(Secret&&) = default;
  ~Secret() {
    if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
  }
  std::uint8_t* data() { return bytes.empty() ? nullptr : bytes.data(); }
  [[nodiscard]] std::size_t size() const { return bytes.size(); }
};

// Never ask for a passphrase: an encrypted key is refused rather than prompted for on a
// terminal the service may not have.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

// An EVP_PKEY number as big-endian bytes, `pad` long when given; empty when the key has none.
Secret number(const EVP_PKEY* pkey, const char* name, std::size_t pad = 0) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &raw) != 1 || raw == nullptr) return {};
  const BnPtr bn(raw);
  const auto size = static_cast<std::size_t>(BN_num_bytes(bn.get()));
  if (pad != 0 && size > pad) throw std::runtime_error("the PEM key has an out-of-range number");
  Secret out(pad != 0 ? pad : size);
  if (BN_bn2binpad(bn.get(), out.data(), static_cast<int>(out.size())) < 0)
    throw std::runtime_error("cannot read the PEM key's numbers");
  return out;
}

PkeyPtr read_pem(std::string_view text) {
  auto bio = [text] { return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))); };
  auto b = bio();
  PkeyPtr pkey(b ? PEM_read_bio_PrivateKey(b.get(), nullptr, no_passphrase, nullptr) : nullptr);
  if (!pkey) {
    // SubjectPublicKeyInfo ("PUBLIC KEY") and PKCS#1 ("RSA PUBLIC KEY") alike.
    EVP_PKEY* raw = nullptr;
    const std::unique_ptr<OSSL_DECODER_CTX, DecoderFree> dec(OSSL_DECODER_CTX_new_for_pkey(
        &raw, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY, nullptr, nullptr));
    b = bio();
    if (dec && b && OSSL_DECODER_from_bio(dec.get(), b.get()) == 1) pkey.reset(raw);
  }
  // Whatever the attempts left on this thread's error queue is not for the next TLS call.
  ERR_clear_error();
  if (!pkey) throw std::runtime_error("the PEM text is not an RSA or EC key OpenSSL can read");
  return pkey;
}

cjose_jwk_t* ec_from_pkey(const EVP_PKEY* pkey, bool priv) {
  char group[64] = {};
  std::size_t group_len = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &group_len) != 1)
    throw std::runtime_error("the EC key has no named curve");
  const std::string_view name(group, group_len);
  cjose_jwk_ec_keyspec spec{};
  std::size_t size = 0;
  if (name == "prime256v1" || name == "P-256") {
    spec.crv = CJOSE_JWK_EC_P_256;
    size = 32;
  } else if (name == "secp384r1" || name == "P-384") {
    spec.crv = CJOSE_JWK_EC_P_384;
    size = 48;
  } else {
    throw std::runtime_error("the EC key's curve is not P-256 or P-384");
  }
  auto x = number(pkey, OSSL_PKEY_PARAM_EC_PUB_X, size);
  auto y = number(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, size);
  auto d = priv ? number(pkey, OSSL_PKEY_PARAM_PRIV_KEY, size) : Secret();
  if (x.size() == 0 || y.size() == 0 || (priv && d.size() == 0))
    throw std::runtime_error("the EC key is incomplete");
  spec.x = x.data();
  spec.xlen = x.size();
  spec.y = y.data();
  spec.ylen = y.size();
  spec.d = d.data();
  spec.dlen = d.size();
  cjose_err err{};
  return cjose_jwk_create_EC_spec(&spec, &err);
}

cjose_jwk_t* rsa_from_pkey(const EVP_PKEY* pkey, bool priv) {
  auto n = number(pkey, OSSL_PKEY_PARAM_RSA_N);
  auto e = number(pkey, OSSL_PKEY_PARAM_RSA_E);
  Secret d, p, q, dp, dq, qi;
  if (priv) {
    d = number(pkey, OSSL_PKEY_PARAM_RSA_D);
    p = number(pkey, OSSL_PKEY_PARAM_RSA_FACTOR1);
    q = number(pkey, OSSL_PKEY_PARAM_RSA_FACTOR2);
    dp = number(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT1);
    dq = number(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT2);
    qi = number(pkey, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
  }
  if (n.size() == 0 || e.size() == 0 || (priv && d.size() == 0))
    throw std::runtime_error("the RSA key is incomplete");
  cjose_jwk_rsa_keyspec spec{e.data(),  e.size(),  n.data(),  n.size(), d.data(),  d.size(),
                             p.data(),  p.size(),  q.data(),  q.size(), dp.data(), dp.size(),
                             dq.data(), dq.size(), qi.data(), qi.size()};
  cjose_err err{};
  return cjose_jwk_create_RSA_spec(&spec, &err);
}

// A member of cjose's JWK as a BIGNUM (pushed into the param builder, which copies it).
BnPtr bn_member(const rapidjson::Document& jwk, const char* name) {
  bool wrong = false;
  const auto text = string_member(jwk, name, wrong);
  if (!text) return nullptr;
  auto bytes = base64url_decode(*text);
  if (!bytes || bytes->empty()) return nullptr;
  BnPtr bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes->data()),
                     static_cast<int>(bytes->size()), nullptr));
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return bn;
}

}  // namespace

Key key_from_pem(std::string_view pem) {
  if (pem.find("ENCRYPTED") != std::string_view::npos)
    throw std::runtime_error("the PEM key is encrypted: give it unencrypted, in a mode 0600 file");
  const auto pkey = read_pem(pem);
  // A public-only EVP_PKEY has no private number; that, not the PEM label, decides.
  BIGNUM* probe = nullptr;
  const char* private_name =
      EVP_PKEY_is_a(pkey.get(), "EC") ? OSSL_PKEY_PARAM_PRIV_KEY : OSSL_PKEY_PARAM_RSA_D;
  const bool priv = EVP_PKEY_get_bn_param(pkey.get(), private_name, &probe) == 1;
  BN_clear_free(probe);
  ERR_clear_error();
  cjose_jwk_t* jwk = nullptr;
  if (EVP_PKEY_is_a(pkey.get(), "EC"))
    jwk = ec_from_pkey(pkey.get(), priv);
  else if (EVP_PKEY_is_a(pkey.get(), "RSA"))
    jwk = rsa_from_pkey(pkey.get(), priv);
  else
    throw std::runtime_error("the PEM key is not an RSA or EC key");
  if (jwk == nullptr) throw std::runtime_error("the PEM key is not a valid key");
  return Key(make_impl(jwk, priv, "", std::nullopt));
}

std::string pem_of(const Key::Impl& key, bool private_half) {
  cjose_err err{};
  char* json = cjose_jwk_to_json(key.jwk, private_half, &err);
  if (json == nullptr) throw std::runtime_error("cannot export the key");
  rapidjson::Document jwk;
  const bool parsed = parse_object(json, jwk);
  OPENSSL_cleanse(json, std::strlen(json));
  cjose_get_dealloc()(json);
  if (!parsed) throw std::runtime_error("cannot export the key");

  const std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld) throw std::runtime_error("out of memory");
  std::vector<BnPtr> numbers;  // alive until the params are built
  auto push = [&](const char* param, const char* name, bool required) {
    auto bn = bn_member(jwk, name);
    if (!bn) {
      if (required) throw std::runtime_error("the key is incomplete");
      return;
    }
    if (OSSL_PARAM_BLD_push_BN(bld.get(), param, bn.get()) != 1)
      throw std::runtime_error("cannot export the key");
    numbers.push_back(std::move(bn));
  };
  std::string point;
  if (key.ec) {
    const char* group = key.ec_bytes == 32 ? "prime256v1" : "secp384r1";
    // The uncompressed point: 0x04 || X || Y, both at the curve's full length.
    point = std::string(1, '\x04') + base64url_decode(key.x).value_or("") +
            base64url_decode(key.y).value_or("");
    if (OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1)
      throw std::runtime_error("cannot export the key");
    if (private_half) push(OSSL_PKEY_PARAM_PRIV_KEY, "d", true);
  } else {
    push(OSSL_PKEY_PARAM_RSA_N, "n", true);
    push(OSSL_PKEY_PARAM_RSA_E, "e", true);
    if (private_half) {
      push(OSSL_PKEY_PARAM_RSA_D, "d", true);
      push(OSSL_PKEY_PARAM_RSA_FACTOR1, "p", false);
      push(OSSL_PKEY_PARAM_RSA_FACTOR2, "q", false);
      push(OSSL_PKEY_PARAM_RSA_EXPONENT1, "dp", false);
      push(OSSL_PKEY_PARAM_RSA_EXPONENT2, "dq", false);
      push(OSSL_PKEY_PARAM_RSA_COEFFICIENT1, "qi", false);
    }
  }
  const std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  const std::unique_ptr<EVP_PKEY_CTX, CtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, key.ec ? "EC" : "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, private_half ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                        params.get()) != 1) {
    ERR_clear_error();
    throw std::runtime_error("cannot export the key");
  }
  const PkeyPtr pkey(raw);
  // Secure-heap memory BIO: the PEM text of a private key is wiped when the BIO goes.
  const BioPtr bio(BIO_new(BIO_s_secmem()));
  const int written = !bio           ? 0
                      : private_half ? PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr,
                                                                nullptr, 0, nullptr, nullptr)
                                     : PEM_write_bio_PUBKEY(bio.get(), pkey.get());
  char* data = nullptr;
  const long size = written == 1 ? BIO_get_mem_data(bio.get(), &data) : 0;
  ERR_clear_error();
  if (size <= 0 || data == nullptr) throw std::runtime_error("cannot write the key as PEM");
  return {data, static_cast<std::size_t>(size)};
}

}  // namespace fbr::server::jose::detail
