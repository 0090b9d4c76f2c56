// Compact JWS in and out, and the registered claims. The token comes from the internet: it is
// taken apart and checked here (size, three base64url parts, JSON objects, the alg against the
// allowed list and the key) before cjose sees it, so cjose only ever verifies an RS/PS/ES
// signature with a key of the right kind.
#include <cjose/base64.h>
#include <cjose/header.h>
#include <cjose/jws.h>
#include <cjose/util.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>

#include "server/support/jose_impl.hpp"

namespace fbr::server::jose {
namespace {

// Above any real JWT (ours are < 2 KiB; an EHR's with an x5c chain a few KiB), far below what
// would make parsing or hashing cost anything.
constexpr std::size_t kMaxTokenBytes = 16 * 1024;

constexpr std::array kAlgs{Alg::kRS256, Alg::kRS384, Alg::kPS256,
                           Alg::kPS384, Alg::kES256, Alg::kES384};
constexpr std::array<std::string_view, 6> kAlgNames{"RS256", "RS384", "PS256",
                                                    "PS384", "ES256", "ES384"};

struct JwsRelease {
  void operator()(cjose_jws_t* p) const { cjose_jws_release(p); }
};
struct HeaderRelease {
  void operator()(cjose_header_t* p) const { cjose_header_release(p); }
};
using JwsPtr = std::unique_ptr<cjose_jws_t, JwsRelease>;

bool is_base64url(std::string_view text) {
  // Unpadded RFC 4648 §5 only: a '=' or a '+' is malformed, and a length of 4k+1 cannot be.
  if (text.size() % 4 == 1) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

// A token taken apart: its header and payload decoded and checked to be JSON objects.
struct Parts {
  Header header;
  std::string payload;
  std::string signature;
};

std::optional<Parts> split(std::string_view token) {
  if (token.size() > kMaxTokenBytes) return std::nullopt;
  const auto first = token.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos)
    return std::nullopt;
  const auto header_b64 = token.substr(0, first);
  const auto payload_b64 = token.substr(first + 1, second - first - 1);
  const auto signature_b64 = token.substr(second + 1);
  if (header_b64.empty() || payload_b64.empty()) return std::nullopt;
  auto header_json = base64url_decode(header_b64);
  auto payload = base64url_decode(payload_b64);
  auto signature = base64url_decode(signature_b64);
  if (!header_json || !payload || !signature) return std::nullopt;

  rapidjson::Document doc;
  if (!detail::parse_object(*header_json, doc)) return std::nullopt;
  // "crit" names extensions the receiver must understand (RFC 7515 §4.1.11); we know none.
  if (doc.HasMember("crit")) return std::nullopt;
  bool wrong = false;
  Parts parts;
  auto alg = detail::string_member(doc, "alg", wrong);
  parts.header.kid = detail::string_member(doc, "kid", wrong).value_or("");
  parts.header.typ = detail::string_member(doc, "typ", wrong).value_or("");
  parts.header.jku = detail::string_member(doc, "jku", wrong).value_or("");
  if (wrong || !alg) return std::nullopt;
  parts.header.alg = std::move(*alg);
  parts.payload = std::move(*payload);
  parts.signature = std::move(*signature);
  return parts;
}

bool sign_alg_fits(const Key& key, std::optional<Alg> jwk_alg, Alg alg) {
  return key.fits(alg) && (!jwk_alg || *jwk_alg == alg);
}

// A NumericDate: an integer or a finite number of seconds (RFC 7519 §2), as whole seconds.
std::optional<std::int64_t> numeric_date(const rapidjson::Value& v, bool& wrong) {
  if (v.IsInt64()) return v.GetInt64();
  if (v.IsDouble()) {
    const double d = v.GetDouble();
    // 2^62 s is far beyond any date; outside it the claim is nonsense, not a date.
    constexpr double kLimit = 4.6e18;
    if (std::isfinite(d) && std::fabs(d) < kLimit) return static_cast<std::int64_t>(std::floor(d));
  }
  wrong = true;
  return std::nullopt;
}

}  // namespace

std::optional<Alg> alg_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kAlgs.size(); ++i)
    if (kAlgNames[i] == name) return kAlgs[i];
  return std::nullopt;
}

std::string_view alg_name(Alg alg) {
  return kAlgNames[static_cast<std::size_t>(alg)];
}

std::span<const Alg> all_algs() {
  return kAlgs;
}

std::string base64url_encode(std::string_view bytes) {
  char* out = nullptr;
  std::size_t out_len = 0;
  cjose_err err{};
  if (!cjose_base64url_encode(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(),
                              &out, &out_len, &err))
    throw std::runtime_error("base64url encoding failed");
  const std::unique_ptr<char, detail::CjoseFree> owned(out);
  return {out, out_len};
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (!is_base64url(text)) return std::nullopt;
  if (text.empty()) return std::string();
  std::uint8_t* out = nullptr;
  std::size_t out_len = 0;
  cjose_err err{};
  if (!cjose_base64url_decode(text.data(), text.size(), &out, &out_len, &err)) return std::nullopt;
  const std::unique_ptr<std::uint8_t, detail::CjoseFree> owned(out);
  return std::string(reinterpret_cast<const char*>(out), out_len);
}

namespace detail {

bool parse_object(std::string_view text, rapidjson::Document& doc) {
  doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(text.data(),
                                                                                    text.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  std::set<std::string_view> names;
  for (const auto& m : doc.GetObject())
    if (!names.emplace(m.name.GetString(), m.name.GetStringLength()).second) return false;
  return true;
}

std::optional<std::string> string_member(const rapidjson::Value& object, const char* name,
                                         bool& wrong_type) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd()) return std::nullopt;
  if (!it->value.IsString()) {
    wrong_type = true;
    return std::nullopt;
  }
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace detail

std::optional<Header> peek_header(std::string_view token) {
  auto parts = split(token);
  if (!parts) return std::nullopt;
  return std::move(parts->header);
}

std::string sign(const Key& key, const SignOptions& options, std::string_view claims_json) {
  const auto name = std::string(alg_name(options.alg));
  if (!key.is_private()) throw std::runtime_error("a public key cannot sign");
  if (!key.fits(options.alg)) throw std::runtime_error("the key cannot sign " + name);
  rapidjson::Document doc;
  if (!detail::parse_object(claims_json, doc))
    throw std::runtime_error("the claims to sign are not a JSON object");

  cjose_err err{};
  const std::unique_ptr<cjose_header_t, HeaderRelease> header(cjose_header_new(&err));
  if (!header) throw std::runtime_error("cannot make a JOSE header");
  auto set = [&](const char* attr, const std::string& value) {
    if (!value.empty() && !cjose_header_set(header.get(), attr, value.c_str(), &err))
      throw std::runtime_error(std::string("cannot set the JOSE header's ") + attr);
  };
  set(CJOSE_HDR_ALG, name);
  set(CJOSE_HDR_KID, options.kid);
  set("typ", options.typ);
  set("jku", options.jku);
  const JwsPtr jws(cjose_jws_sign(key.impl().jwk, header.get(),
                                  reinterpret_cast<const std::uint8_t*>(claims_json.data()),
                                  claims_json.size(), &err));
  const char* compact = nullptr;
  if (!jws || !cjose_jws_export(jws.get(), &compact, &err) || compact == nullptr)
    throw std::runtime_error("signing with " + name + " failed");
  return compact;
}

std::string_view reason_name(Failure failure) {
  switch (failure) {
    case Failure::kNone:
      return "";
    case Failure::kMalformed:
      return "malformed";
    case Failure::kAlg:
      return "alg";
    case Failure::kKid:
      return "kid";
    case Failure::kSignature:
      return "signature";
    case Failure::kExpired:
      return "expired";
    case Failure::kNotYetValid:
      return "not_yet_valid";
    case Failure::kIssuer:
      return "issuer";
    case Failure::kAudience:
      return "audience";
    case Failure::kScope:
      return "scope";
  }
  return "";
}

std::optional<Claims> parse_claims(std::string_view json) {
  rapidjson::Document doc;
  if (!detail::parse_object(json, doc)) return std::nullopt;
  bool wrong = false;
  Claims c;
  c.iss = detail::string_member(doc, "iss", wrong).value_or("");
  c.sub = detail::string_member(doc, "sub", wrong).value_or("");
  c.jti = detail::string_member(doc, "jti", wrong).value_or("");
  c.scope = detail::string_member(doc, "scope", wrong).value_or("");
  if (const auto aud = doc.FindMember("aud"); aud != doc.MemberEnd()) {
    if (aud->value.IsString()) {
      c.aud.emplace_back(aud->value.GetString(), aud->value.GetStringLength());
    } else if (aud->value.IsArray()) {
      for (const auto& a : aud->value.GetArray()) {
        if (!a.IsString()) return std::nullopt;
        c.aud.emplace_back(a.GetString(), a.GetStringLength());
      }
    } else {
      return std::nullopt;
    }
  }
  for (auto [name, field] : {std::pair{"exp", &Claims::exp}, std::pair{"nbf", &Claims::nbf},
                             std::pair{"iat", &Claims::iat}})
    if (const auto it = doc.FindMember(name); it != doc.MemberEnd())
      c.*field = numeric_date(it->value, wrong);
  if (wrong) return std::nullopt;
  return c;
}

Failure check_claims(const Claims& claims, const ClaimRules& rules, std::int64_t now_unix_s) {
  // Bounded so that now ± leeway cannot overflow, whatever a setting says (a year is plenty).
  const std::int64_t leeway = std::clamp<std::int64_t>(rules.leeway.count(), 0, 366 * 86400);
  if (!claims.exp || *claims.exp < now_unix_s - leeway) return Failure::kExpired;
  if ((claims.nbf && *claims.nbf > now_unix_s + leeway) ||
      (claims.iat && *claims.iat > now_unix_s + leeway))
    return Failure::kNotYetValid;
  if (!rules.issuer.empty() && claims.iss != rules.issuer) return Failure::kIssuer;
  if (!rules.audience.empty() &&
      std::find(claims.aud.begin(), claims.aud.end(), rules.audience) == claims.aud.end())
    return Failure::kAudience;
  if (!rules.required_scope.empty()) {
    bool found = false;
    std::string_view rest = claims.scope;
    while (!found && !rest.empty()) {
      const auto space = rest.find(' ');
      found = rest.substr(0, space) == rules.required_scope;
      rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
    }
    if (!found) return Failure::kScope;
  }
  return Failure::kNone;
}

Verified verify_signature(std::string_view token, const KeySet& keys,
                          std::span<const Alg> allowed) {
  Verified v;
  auto parts = split(token);
  if (!parts) {
    v.failure = Failure::kMalformed;
    return v;
  }
  v.header = parts->header;
  auto fail = [&v](Failure f) {
    v.failure = f;
    return v;
  };
  if (!parse_claims(parts->payload)) return fail(Failure::kMalformed);
  // The alg decides everything after it, so it is settled before any key is looked at: one of
  // ours (never none, never HS*), configured, and of the key's kind and size.
  const auto alg = alg_from_name(parts->header.alg);
  if (!alg || std::find(allowed.begin(), allowed.end(), *alg) == allowed.end())
    return fail(Failure::kAlg);
  std::optional<Alg> jwk_alg;
  const Key* key = keys.find(parts->header.kid, &jwk_alg);
  if (key == nullptr) return fail(Failure::kKid);
  if (!sign_alg_fits(*key, jwk_alg, *alg)) return fail(Failure::kAlg);
  // cjose splits an ES signature in half whatever its length; JOSE wants exactly R||S.
  if (parts->signature.empty() ||
      (key->is_ec() && parts->signature.size() != 2 * key->impl().ec_bytes))
    return fail(Failure::kSignature);

  cjose_err err{};
  const JwsPtr jws(cjose_jws_import(token.data(), token.size(), &err));
  if (!jws) return fail(Failure::kMalformed);
  // The header cjose verifies by is the one checked above (one parser's view, not two).
  const char* cjose_alg = cjose_header_get(cjose_jws_get_protected(jws.get()), CJOSE_HDR_ALG, &err);
  if (cjose_alg == nullptr || parts->header.alg != cjose_alg) return fail(Failure::kMalformed);
  if (!cjose_jws_verify(jws.get(), key->impl().jwk, &err)) return fail(Failure::kSignature);
  std::uint8_t* plain = nullptr;
  std::size_t plain_len = 0;
  if (!cjose_jws_get_plaintext(jws.get(), &plain, &plain_len, &err))
    return fail(Failure::kMalformed);
  auto claims = parse_claims(std::string_view(reinterpret_cast<const char*>(plain), plain_len));
  if (!claims) return fail(Failure::kMalformed);
  v.claims = std::move(*claims);
  return v;
}

Verified verify(std::string_view token, const KeySet& keys, std::span<const Alg> allowed,
                const ClaimRules& rules, std::int64_t now_unix_s) {
  auto v = verify_signature(token, keys, allowed);
  if (v.ok()) v.failure = check_claims(v.claims, rules, now_unix_s);
  return v;
}

}  // namespace fbr::server::jose
