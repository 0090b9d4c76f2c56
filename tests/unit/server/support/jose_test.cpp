// JOSE tokens: sign → verify for every algorithm, and each way a hostile token is refused (and
// with which reason): malformed, alg (none, HS256 keyed with our public key, the wrong key kind or
// curve, not allowed, not the JWK's), kid, signature; then the claims and their leeway edges.
#include "server/support/jose.hpp"

#include <cjose/header.h>
#include <cjose/jwk.h>
#include <cjose/jws.h>
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "tests/unit/server/support/jose_test_support.hpp"

namespace fbr::server::jose {
namespace {

constexpr std::int64_t kNow = 1'800'000'000;

ClaimRules rules_of(std::string issuer, std::string audience, std::string scope = "",
                    int leeway_s = 60) {
  ClaimRules r;
  r.issuer = std::move(issuer);
  r.audience = std::move(audience);
  r.required_scope = std::move(scope);
  r.leeway = std::chrono::seconds(leeway_s);
  return r;
}

// Generated keys, one per algorithm, made once (RSA generation is the slow part of this file).
const Key& test_key(Alg alg) {
  static std::map<Alg, Key> keys;
  auto it = keys.find(alg);
  if (it == keys.end()) it = keys.emplace(alg, Key::generate(alg)).first;
  return it->second;
}

std::string claims_json(std::int64_t exp = kNow + 300) {
  return R"({"iss":"https://ehr.example","sub":"client-1","aud":"https://us.example/hook",)"
         R"("jti":"j-1","scope":"system/*.read launch","iat":)" +
         std::to_string(kNow) + R"(,"exp":)" + std::to_string(exp) + "}";
}

KeySet set_of(const Key& key, std::string kid = "k1") {
  KeySet set;
  set.add(std::move(kid), key);
  return set;
}

// A compact JWS from its parts (the signature bytes as given), for tokens no signer would make.
std::string compact(std::string_view header, std::string_view payload, std::string_view sig) {
  return base64url_encode(header) + "." + base64url_encode(payload) + "." + base64url_encode(sig);
}

// The tampering helpers take the token apart at its dots.
std::vector<std::string> parts_of(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (auto dot = token.find('.'); dot != std::string::npos; dot = token.find('.', start)) {
    parts.push_back(token.substr(start, dot - start));
    start = dot + 1;
  }
  parts.push_back(token.substr(start));
  return parts;
}

Failure verdict(const std::string& token, const KeySet& keys,
                std::span<const Alg> allowed = all_algs()) {
  return verify_signature(token, keys, allowed).failure;
}

// The classic confusion attack: an HMAC token keyed with the bytes of our public key (as a JWK,
// or as PEM), made with cjose itself so that only our alg check stands in the way.
std::string hmac_token(std::string_view secret, const std::string& kid) {
  cjose_err err{};
  cjose_jwk_t* oct = cjose_jwk_create_oct_spec(reinterpret_cast<const std::uint8_t*>(secret.data()),
                                               secret.size(), &err);
  REQUIRE(oct != nullptr);
  cjose_header_t* header = cjose_header_new(&err);
  REQUIRE(cjose_header_set(header, CJOSE_HDR_ALG, CJOSE_HDR_ALG_HS256, &err));
  REQUIRE(cjose_header_set(header, CJOSE_HDR_KID, kid.c_str(), &err));
  const auto claims = claims_json();
  cjose_jws_t* jws = cjose_jws_sign(
      oct, header, reinterpret_cast<const std::uint8_t*>(claims.data()), claims.size(), &err);
  REQUIRE(jws != nullptr);
  const char* out = nullptr;
  REQUIRE(cjose_jws_export(jws, &out, &err));
  std::string token = out;
  cjose_jws_release(jws);
  cjose_header_release(header);
  cjose_jwk_release(oct);
  return token;
}

TEST_CASE("jose algs: the six names and nothing else") {
  CHECK(all_algs().size() == 6);
  for (const Alg alg : all_algs())
    CHECK(alg_from_name(alg_name(alg)) == alg);
  for (const char* other : {"none", "None", "HS256", "HS384", "HS512", "ES512", "RS512", "PS512",
                            "EdDSA", "rs256", "", "RS256 "})
    CHECK_FALSE(alg_from_name(other).has_value());
}

TEST_CASE("jose base64url: unpadded URL alphabet only") {
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK(base64url_decode("-_8") == std::string("\xfb\xff"));
  CHECK(base64url_decode("") == std::string());
  CHECK_FALSE(base64url_decode("-_8=").has_value());
  CHECK_FALSE(base64url_decode("+/8").has_value());
  CHECK_FALSE(base64url_decode("abcde").has_value());  // 4k+1 characters cannot be base64
  CHECK_FALSE(base64url_decode("ab c").has_value());
}

TEST_CASE("jose sign and verify: a round trip for each of the six algorithms") {
  for (const Alg alg : all_algs()) {
    INFO(alg_name(alg));
    const Key& key = test_key(alg);
    const auto token = sign(key, opts(alg, "k1", "https://us.example/jwks"), claims_json());
    const auto header = peek_header(token);
    REQUIRE(header.has_value());
    CHECK(header->alg == alg_name(alg));
    CHECK(header->kid == "k1");
    CHECK(header->typ == "JWT");
    CHECK(header->jku == "https://us.example/jwks");
    const auto v = verify_signature(token, set_of(key), all_algs());
    CHECK(v.ok());
    CHECK(v.claims.iss == "https://ehr.example");
    CHECK(v.claims.aud == std::vector<std::string>{"https://us.example/hook"});
    CHECK(v.claims.exp == kNow + 300);
    // Verified with the public half alone (as a receiver has it).
    CHECK(verify_signature(token, set_of(Key::parse(key.public_pem())), all_algs()).ok());
    // ES: JOSE's raw R||S (64 or 96 bytes), not DER.
    if (key.is_ec())
      CHECK(base64url_decode(parts_of(token)[2])->size() == (alg == Alg::kES256 ? 64U : 96U));
  }
}

TEST_CASE("jose sign: no kid or jku in the header when empty and it refuses what it cannot sign") {
  const Key& key = test_key(Alg::kES256);
  const auto token = sign(key, opts(Alg::kES256), R"({"exp":1})");
  const auto header = base64url_decode(parts_of(token)[0]);
  REQUIRE(header.has_value());
  CHECK(header->find("kid") == std::string::npos);
  CHECK(header->find("jku") == std::string::npos);
  CHECK_THROWS_AS(sign(key, opts(Alg::kES384), "{}"), std::runtime_error);
  CHECK_THROWS_AS(sign(key, opts(Alg::kRS256), "{}"), std::runtime_error);
  CHECK_THROWS_AS(sign(key, opts(Alg::kES256), "[1]"), std::runtime_error);
  CHECK_THROWS_AS(sign(Key::parse(key.public_pem()), opts(Alg::kES256), "{}"), std::runtime_error);
}

TEST_CASE("jose verify: malformed tokens") {
  const Key& key = test_key(Alg::kES256);
  const auto keys = set_of(key);
  const auto good = sign(key, opts(Alg::kES256, "k1"), claims_json());
  const auto p = parts_of(good);
  const std::string header = R"({"alg":"ES256","kid":"k1"})";
  for (const std::string& token : {
           std::string(), std::string("abc"), p[0] + "." + p[1], good + ".x", p[0] + ".." + p[2],
           "." + p[1] + "." + p[2],
           p[0] + "." + p[1] + "." + p[2] + "=",  // padding
           p[0] + "." + p[1] + "!." + p[2],       // not base64url
           compact("[1]", claims_json(), "sig"),  // header not an object
           compact("{\"alg\":", claims_json(), "sig"),
           compact(header, "[]", "sig"),  // payload not an object
           compact(header, "not json", "sig"),
           compact(header, R"({"exp":"soon"})", "sig"),  // a registered claim of the wrong type
           compact(R"({"alg":"ES256","alg":"HS256"})", claims_json(), "sig"),  // alg twice
           compact(R"({"alg":256})", claims_json(), "sig"),
           compact(R"({"kid":"k1"})", claims_json(), "sig"),  // no alg
           compact(R"({"alg":"ES256","crit":["b64"],"b64":false})", claims_json(), "sig"),
           compact(header, "{\"sub\":\"\xff\"}", "sig"),  // not UTF-8
       }) {
    INFO(token.substr(0, 80));
    CHECK(verdict(token, keys) == Failure::kMalformed);
  }
  // Over 16 KiB: refused before anything is decoded, even when well formed and signed.
  const std::string big =
      R"({"exp":)" + std::to_string(kNow + 300) + R"(,"pad":")" + std::string(13000, 'a') + "\"}";
  CHECK(verdict(sign(key, opts(Alg::kES256, "k1"), big), keys) == Failure::kMalformed);
  CHECK_FALSE(peek_header(good + ".x").has_value());
}

TEST_CASE("jose verify: alg none is refused, signed or not") {
  const auto keys = set_of(test_key(Alg::kRS256));
  for (const char* alg : {"none", "None", "NONE"}) {
    const std::string header = std::string(R"({"alg":")") + alg + R"(","kid":"k1"})";
    CHECK(verdict(compact(header, claims_json(), ""), keys) == Failure::kAlg);
    CHECK(verdict(compact(header, claims_json(), "x"), keys) == Failure::kAlg);
  }
}

TEST_CASE("jose verify: HS256 keyed with our own public key (JWK or PEM) is refused") {
  for (const Alg alg : {Alg::kRS256, Alg::kES256}) {
    const Key& key = test_key(alg);
    const auto keys = set_of(key);
    const auto jwk = key.public_jwk("k1", alg);
    const auto jwks = jwks_json({{key, "k1", alg}});
    const auto pem = key.public_pem();
    for (const std::string& secret : {jwk, jwks, pem}) {
      const auto token = hmac_token(secret, "k1");
      CHECK(peek_header(token)->alg == "HS256");
      CHECK(verdict(token, keys) == Failure::kAlg);
      CHECK(verdict(token, KeySet::parse(jwks)) == Failure::kAlg);
    }
  }
}

TEST_CASE("jose verify: an alg that does not fit the key found is refused before verifying") {
  const Key& rsa = test_key(Alg::kRS256);
  const Key& p256 = test_key(Alg::kES256);
  const Key& p384 = test_key(Alg::kES384);
  // Each token is signed properly with its own key, then presented under another key's kid.
  const auto es384 = sign(p384, opts(Alg::kES384, "k1"), claims_json());
  const auto es256 = sign(p256, opts(Alg::kES256, "k1"), claims_json());
  const auto rs256 = sign(rsa, opts(Alg::kRS256, "k1"), claims_json());
  CHECK(verdict(es384, set_of(rsa)) == Failure::kAlg);
  CHECK(verdict(es256, set_of(p384)) == Failure::kAlg);
  CHECK(verdict(es384, set_of(p256)) == Failure::kAlg);
  CHECK(verdict(rs256, set_of(p256)) == Failure::kAlg);
  const auto ps256 = sign(rsa, opts(Alg::kPS256, "k1"), claims_json());
  CHECK(verdict(ps256, set_of(p384)) == Failure::kAlg);
}

TEST_CASE("jose verify: an alg outside the allowed list, or not the JWK's own, is refused") {
  const Key& rsa = test_key(Alg::kRS256);
  const auto rs256 = sign(rsa, opts(Alg::kRS256, "k1"), claims_json());
  const std::array only_rs384{Alg::kRS384};
  CHECK(verdict(rs256, set_of(rsa), only_rs384) == Failure::kAlg);
  CHECK(verdict(rs256, set_of(rsa), {}) == Failure::kAlg);
  // The JWK says PS384: RS256 with the same RSA key is refused.
  const auto jwks = jwks_json({{rsa, "k1", Alg::kPS384}});
  const auto keys = KeySet::parse(jwks);
  CHECK(verdict(rs256, keys) == Failure::kAlg);
  CHECK(verdict(sign(rsa, opts(Alg::kPS384, "k1"), claims_json()), keys) == Failure::kNone);
}

TEST_CASE("jose verify: kid") {
  const Key& a = test_key(Alg::kES256);
  const Key& b = test_key(Alg::kES384);
  KeySet two;
  two.add("a", a);
  two.add("b", b);
  const auto to_a = sign(a, opts(Alg::kES256, "a"), claims_json());
  const auto to_b = sign(b, opts(Alg::kES384, "b"), claims_json());
  CHECK(verdict(to_a, two) == Failure::kNone);
  CHECK(verdict(to_b, two) == Failure::kNone);
  CHECK(verdict(sign(a, opts(Alg::kES256, "c"), claims_json()), two) == Failure::kKid);
  // No kid: fine with exactly one key, a kid failure with two.
  const auto no_kid = sign(a, opts(Alg::kES256), claims_json());
  CHECK(verdict(no_kid, set_of(a)) == Failure::kNone);
  CHECK(verdict(no_kid, two) == Failure::kKid);
  CHECK(verdict(no_kid, KeySet()) == Failure::kKid);
  // A kid with one key that has another kid: still a kid failure, not a guess.
  CHECK(verdict(sign(a, opts(Alg::kES256, "x"), claims_json()), set_of(a, "a")) == Failure::kKid);
}

TEST_CASE("jose verify: bad signatures") {
  for (const Alg alg : all_algs()) {
    INFO(alg_name(alg));
    const Key& key = test_key(alg);
    const auto keys = set_of(key);
    const auto token = sign(key, opts(alg, "k1"), claims_json());
    const auto p = parts_of(token);
    // The payload changed (a later exp), the signature kept.
    const auto tampered = p[0] + "." + base64url_encode(claims_json(kNow + 99999)) + "." + p[2];
    CHECK(verdict(tampered, keys) == Failure::kSignature);
    // The signature of another token.
    const auto other = sign(key, opts(alg, "k1"), claims_json(kNow + 1));
    CHECK(verdict(p[0] + "." + p[1] + "." + parts_of(other)[2], keys) == Failure::kSignature);
    // A signature from another key of the same kind under this kid.
    const Key stranger = Key::generate(alg);
    CHECK(verdict(sign(stranger, opts(alg, "k1"), claims_json()), keys) == Failure::kSignature);
    // Cut short, or empty.
    auto sig = *base64url_decode(p[2]);
    sig.pop_back();
    CHECK(verdict(p[0] + "." + p[1] + "." + base64url_encode(sig), keys) == Failure::kSignature);
    CHECK(verdict(p[0] + "." + p[1] + ".", keys) == Failure::kSignature);
  }
}

TEST_CASE("jose claims: parse") {
  auto c = parse_claims(R"({"aud":["a","b"],"exp":1.9,"nbf":-5,"scope":"x y","other":{"k":[1]}})");
  REQUIRE(c.has_value());
  CHECK(c->aud == std::vector<std::string>{"a", "b"});
  CHECK(c->exp == 1);
  CHECK(c->nbf == -5);
  CHECK_FALSE(c->iat.has_value());
  CHECK(c->scope == "x y");
  CHECK_FALSE(parse_claims("[]").has_value());
  CHECK_FALSE(parse_claims(R"({"aud":["a",1]})").has_value());
  CHECK_FALSE(parse_claims(R"({"aud":7})").has_value());
  CHECK_FALSE(parse_claims(R"({"iss":null})").has_value());
  CHECK_FALSE(parse_claims(R"({"exp":"1"})").has_value());
  CHECK_FALSE(parse_claims(R"({"exp":1e300})").has_value());
  CHECK_FALSE(parse_claims(R"({"exp":18446744073709551615})").has_value());
  CHECK_FALSE(parse_claims(R"({"exp":1,"exp":2})").has_value());
}

TEST_CASE("jose claims: exp, nbf and iat at the leeway's edges") {
  const ClaimRules rules = rules_of("", "", "", 60);
  Claims c;
  CHECK(check_claims(c, rules, kNow) == Failure::kExpired);  // no exp
  c.exp = kNow - 60;
  CHECK(check_claims(c, rules, kNow) == Failure::kNone);
  CHECK(check_claims(c, rules, kNow + 1) == Failure::kExpired);
  c.exp = kNow + 300;
  c.nbf = kNow + 60;
  CHECK(check_claims(c, rules, kNow) == Failure::kNone);
  CHECK(check_claims(c, rules, kNow - 1) == Failure::kNotYetValid);
  c.nbf.reset();
  c.iat = kNow + 61;
  CHECK(check_claims(c, rules, kNow) == Failure::kNotYetValid);
  c.iat = kNow + 60;
  CHECK(check_claims(c, rules, kNow) == Failure::kNone);
  // No leeway at all.
  const ClaimRules strict = rules_of("", "", "", 0);
  c.iat = kNow;
  c.exp = kNow;
  CHECK(check_claims(c, strict, kNow) == Failure::kNone);
  CHECK(check_claims(c, strict, kNow + 1) == Failure::kExpired);
  // Extreme values neither overflow nor pass.
  c.exp = std::numeric_limits<std::int64_t>::min();
  CHECK(check_claims(c, rules, kNow) == Failure::kExpired);
  c.exp = std::numeric_limits<std::int64_t>::max();
  c.iat = std::numeric_limits<std::int64_t>::max();
  CHECK(check_claims(c, rules, kNow) == Failure::kNotYetValid);
}

TEST_CASE("jose claims: issuer, audience and scope with empty rules not checked") {
  Claims c;
  c.exp = kNow + 10;
  c.iss = "https://ehr.example";
  c.aud = {"other", "https://us.example/hook"};
  c.scope = "system/Patient.read  system/*.read";
  CHECK(check_claims(c, {}, kNow) == Failure::kNone);
  ClaimRules r = rules_of("https://ehr.example", "https://us.example/hook", "system/*.read");
  CHECK(check_claims(c, r, kNow) == Failure::kNone);
  r.issuer = "https://ehr.example/";
  CHECK(check_claims(c, r, kNow) == Failure::kIssuer);
  r.issuer = "https://ehr.example";
  r.audience = "https://us.example";
  CHECK(check_claims(c, r, kNow) == Failure::kAudience);
  c.aud.clear();
  r.audience = "https://us.example/hook";
  CHECK(check_claims(c, r, kNow) == Failure::kAudience);
  c.aud = {"https://us.example/hook"};
  r.required_scope = "system/*";  // a prefix of a scope is not the scope
  CHECK(check_claims(c, r, kNow) == Failure::kScope);
  r.required_scope = "system/Patient.read";
  CHECK(check_claims(c, r, kNow) == Failure::kNone);
  c.scope.clear();
  CHECK(check_claims(c, r, kNow) == Failure::kScope);
}

TEST_CASE("jose verify: the signature first, then the claims") {
  const Key& key = test_key(Alg::kES384);
  const auto keys = set_of(key);
  const ClaimRules rules = rules_of("https://ehr.example", "https://us.example/hook");
  const auto good = sign(key, opts(Alg::kES384, "k1"), claims_json());
  CHECK(verify(good, keys, all_algs(), rules, kNow).ok());
  CHECK(verify(good, keys, all_algs(), rules, kNow + 361).failure == Failure::kExpired);
  const auto stale = sign(key, opts(Alg::kES384, "k1"), claims_json(kNow - 1000));
  CHECK(verify(stale, keys, all_algs(), rules, kNow).failure == Failure::kExpired);
  // A bad signature is the failure, whatever the claims say.
  const auto p = parts_of(stale);
  CHECK(
      verify(p[0] + "." + p[1] + "." + parts_of(good)[2], keys, all_algs(), rules, kNow).failure ==
      Failure::kSignature);
}

TEST_CASE("jose reason names") {
  CHECK(reason_name(Failure::kNone).empty());
  CHECK(reason_name(Failure::kMalformed) == "malformed");
  CHECK(reason_name(Failure::kAlg) == "alg");
  CHECK(reason_name(Failure::kKid) == "kid");
  CHECK(reason_name(Failure::kSignature) == "signature");
  CHECK(reason_name(Failure::kExpired) == "expired");
  CHECK(reason_name(Failure::kNotYetValid) == "not_yet_valid");
  CHECK(reason_name(Failure::kIssuer) == "issuer");
  CHECK(reason_name(Failure::kAudience) == "audience");
  CHECK(reason_name(Failure::kScope) == "scope");
}

}  // namespace
}  // namespace fbr::server::jose
