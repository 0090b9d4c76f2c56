// JOSE keys: the RFC 7638 thumbprint, generated keys of the right kind, PEM in every form OpenSSL
// writes (and out again), JWKs public and private, and a JWKS whose unusable keys are skipped.
// Messages name what is wrong, never the key's text.
#include <cjose/jwk.h>
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "server/support/jose.hpp"
#include "server/support/jose_impl.hpp"
#include "tests/unit/server/support/jose_test_support.hpp"

namespace fbr::server::jose {
namespace {

namespace fs = std::filesystem;

// RFC 7638 §3.1.
constexpr std::string_view kRfc7638Key =
    R"({"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aP)"
    R"(FFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4Q)"
    R"(yQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL)"
    R"(yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqD)"
    R"(Kgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"})";

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "fbr-jose-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path); }
  [[nodiscard]] std::string read(const std::string& name) const {
    std::ifstream in(path / name);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  // Runs openssl with its output file in here; false when it failed.
  [[nodiscard]] bool openssl(const std::string& args) const {
    const std::string cmd = "cd '" + path.string() + "' && openssl " + args + " 2>/dev/null";
    return std::system(cmd.c_str()) == 0;
  }
};

rapidjson::Document json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  REQUIRE(doc.IsObject());
  return doc;
}

// The private JWK of a key, as cjose writes it (to feed a private JWK in).
std::string private_jwk(const Key& key) {
  cjose_err err{};
  char* text = cjose_jwk_to_json(key.impl().jwk, true, &err);
  REQUIRE(text != nullptr);
  std::string out = text;
  free(text);
  return out;
}

// The message of what `f` throws.
template <typename F>
std::string message_of(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  FAIL("no exception");
  return {};
}

TEST_CASE("jose thumbprint: the RFC 7638 example key") {
  const Key key = Key::parse(kRfc7638Key);
  CHECK(key.thumbprint() == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  CHECK(key.kid() == "2011-04-29");
  CHECK_FALSE(key.is_private());
  CHECK_FALSE(key.is_ec());
  // Its "alg" restricts it.
  CHECK(key.fits(Alg::kRS256));
  CHECK_FALSE(key.fits(Alg::kPS256));
  CHECK(key.default_alg() == Alg::kRS256);
}

TEST_CASE("jose generate: the curve or size each algorithm asks for") {
  const Key p256 = Key::generate(Alg::kES256);
  const Key p384 = Key::generate(Alg::kES384);
  CHECK(p256.is_private());
  CHECK(p256.is_ec());
  CHECK(p256.fits(Alg::kES256));
  CHECK_FALSE(p256.fits(Alg::kES384));
  CHECK_FALSE(p256.fits(Alg::kRS256));
  CHECK(p256.default_alg() == Alg::kES256);
  CHECK(p384.fits(Alg::kES384));
  CHECK_FALSE(p384.fits(Alg::kES256));
  CHECK(p384.default_alg() == Alg::kES384);
  CHECK(json(p384.public_jwk("k", Alg::kES384))["crv"] == "P-384");
  for (const Alg alg : {Alg::kRS256, Alg::kPS384}) {
    const Key rsa = Key::generate(alg);
    CHECK_FALSE(rsa.is_ec());
    CHECK(rsa.default_alg() == Alg::kRS384);
    for (const Alg a : {Alg::kRS256, Alg::kRS384, Alg::kPS256, Alg::kPS384})
      CHECK(rsa.fits(a));
    CHECK_FALSE(rsa.fits(Alg::kES256));
    const auto jwk = json(rsa.public_jwk("k", alg));
    CHECK(jwk["e"] == "AQAB");                                     // 65537
    CHECK(base64url_decode(jwk["n"].GetString())->size() == 256);  // 2048 bits
  }
  // Two keys are two keys; the kid of a generated key is its thumbprint.
  CHECK(Key::generate(Alg::kES256).thumbprint() != p256.thumbprint());
  CHECK(p256.kid() == p256.thumbprint());
}

TEST_CASE("jose public_jwk and jwks_json: public members only, with kid, alg and use") {
  for (const Alg alg : {Alg::kES384, Alg::kRS384}) {
    const Key key = Key::generate(alg);
    const auto jwk = json(key.public_jwk("my-kid", alg));
    CHECK(jwk["kid"] == "my-kid");
    CHECK(jwk["alg"] == std::string(alg_name(alg)).c_str());
    CHECK(jwk["use"] == "sig");
    for (const char* secret : {"d", "p", "q", "dp", "dq", "qi", "k"})
      CHECK_FALSE(jwk.HasMember(secret));
    const auto set = json(jwks_json({{key, "my-kid", alg}, {key, "other", alg}}));
    REQUIRE(set["keys"].IsArray());
    CHECK(set["keys"].Size() == 2);
    CHECK(set["keys"][1]["kid"] == "other");
    CHECK(jwks_json({}) == R"({"keys":[]})");
    CHECK_THROWS_AS((void)key.public_jwk("k", alg == Alg::kES384 ? Alg::kES256 : Alg::kES384),
                    std::runtime_error);
  }
}

TEST_CASE("jose PEM: private_pem and public_pem read back as the same key") {
  for (const Alg alg : {Alg::kES256, Alg::kES384, Alg::kRS256}) {
    INFO(alg_name(alg));
    const Key key = Key::generate(alg);
    const auto pem = key.private_pem();
    CHECK(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));  // PKCS#8, unencrypted
    const Key back = Key::parse(pem);
    CHECK(back.is_private());
    CHECK(back.thumbprint() == key.thumbprint());
    const Key pub = Key::parse(key.public_pem());
    CHECK(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
    CHECK_FALSE(pub.is_private());
    CHECK(pub.thumbprint() == key.thumbprint());
    CHECK_THROWS_AS((void)pub.private_pem(), std::runtime_error);
    // What the re-read key signs, the original's public half verifies.
    KeySet set;
    set.add("k", pub);
    const auto token = sign(back, opts(alg, "k"), R"({"exp":1})");
    CHECK(verify_signature(token, set, all_algs()).ok());
  }
}

TEST_CASE("jose PEM: the forms openssl writes (PKCS#8, SEC1, PKCS#1, SubjectPublicKeyInfo)") {
  const TempDir dir;
  REQUIRE(dir.openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec.pem"));
  REQUIRE(dir.openssl("ec -in ec.pem -out ec_sec1.pem"));
  REQUIRE(dir.openssl("pkey -in ec.pem -pubout -out ec_pub.pem"));
  REQUIRE(dir.openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem"));
  REQUIRE(dir.openssl("rsa -in rsa.pem -traditional -out rsa_pkcs1.pem"));
  REQUIRE(dir.openssl("pkey -in rsa.pem -pubout -out rsa_pub.pem"));
  REQUIRE(dir.openssl("rsa -in rsa.pem -RSAPublicKey_out -out rsa_pub_pkcs1.pem"));
  CHECK(dir.read("ec_sec1.pem").starts_with("-----BEGIN EC PRIVATE KEY-----"));
  CHECK(dir.read("rsa_pkcs1.pem").starts_with("-----BEGIN RSA PRIVATE KEY-----"));
  CHECK(dir.read("rsa_pub_pkcs1.pem").starts_with("-----BEGIN RSA PUBLIC KEY-----"));

  const Key ec = Key::from_file(dir.path / "ec.pem");
  CHECK(ec.is_private());
  CHECK(ec.fits(Alg::kES384));
  for (const char* name : {"ec_sec1.pem", "ec_pub.pem"}) {
    INFO(name);
    CHECK(Key::from_file(dir.path / name).thumbprint() == ec.thumbprint());
  }
  CHECK(Key::from_file(dir.path / "ec_sec1.pem").is_private());
  CHECK_FALSE(Key::from_file(dir.path / "ec_pub.pem").is_private());
  const Key rsa = Key::from_file(dir.path / "rsa.pem");
  CHECK(rsa.is_private());
  for (const char* name : {"rsa_pkcs1.pem", "rsa_pub.pem", "rsa_pub_pkcs1.pem"}) {
    INFO(name);
    CHECK(Key::from_file(dir.path / name).thumbprint() == rsa.thumbprint());
  }
  CHECK_FALSE(Key::from_file(dir.path / "rsa_pub_pkcs1.pem").is_private());
  // A key openssl made signs what our public half of it verifies, and the other way round.
  KeySet set;
  set.add("k", Key::from_file(dir.path / "rsa_pub.pem"));
  CHECK(verify_signature(sign(rsa, opts(Alg::kPS256, "k"), R"({"exp":1})"), set, all_algs()).ok());
}

TEST_CASE("jose PEM: keys we refuse, with a message that quotes nothing") {
  const TempDir dir;
  REQUIRE(dir.openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out p521.pem"));
  REQUIRE(dir.openssl("genpkey -algorithm ED25519 -out ed.pem"));
  REQUIRE(dir.openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pem"));
  REQUIRE(
      dir.openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 "
                  "-pass pass:hunter2 -out encrypted.pem"));
  for (const char* name : {"p521.pem", "ed.pem", "rsa1024.pem", "encrypted.pem"}) {
    INFO(name);
    const auto text = dir.read(name);
    const auto message = message_of([&] { (void)Key::parse(text); });
    CHECK_FALSE(message.empty());
    CHECK(message.find("MII") == std::string::npos);  // no base64 of the key
    CHECK(message.find("hunter2") == std::string::npos);
    CHECK(message_of([&] { (void)Key::from_file(dir.path / name); }).find(name) !=
          std::string::npos);
  }
  CHECK(message_of([&] { (void)Key::parse(dir.read("encrypted.pem")); }).find("encrypted") !=
        std::string::npos);
  const std::string garbage =
      "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n";
  CHECK(message_of([&] { (void)Key::parse(garbage); }).find("U0VD") == std::string::npos);
  CHECK(message_of([&] { (void)Key::parse("hunter2-the-secret"); }).find("hunter2") ==
        std::string::npos);
  CHECK(message_of([&] { (void)Key::from_file(dir.path / "missing.pem"); }).find("missing.pem") !=
        std::string::npos);
}

TEST_CASE("jose JWK: private and public, and the JWKs refused") {
  const Key key = Key::generate(Alg::kES256);
  const auto priv_text = private_jwk(key);
  REQUIRE(priv_text.find("\"d\"") != std::string::npos);
  const Key priv = Key::parse(priv_text);
  CHECK(priv.is_private());
  CHECK(priv.thumbprint() == key.thumbprint());
  const auto pub_jwk = priv.public_jwk("kid-1", Alg::kES256);
  CHECK(pub_jwk.find("\"d\"") == std::string::npos);
  const Key pub = Key::parse(pub_jwk);
  CHECK_FALSE(pub.is_private());
  CHECK(pub.kid() == "kid-1");
  CHECK_THROWS_AS(sign(pub, opts(Alg::kES256), "{}"), std::runtime_error);

  const Key rsa = Key::generate(Alg::kRS384);
  const Key rsa_priv = Key::parse(private_jwk(rsa));
  CHECK(rsa_priv.is_private());
  KeySet set;
  set.add("r", rsa);
  CHECK(verify_signature(sign(rsa_priv, opts(Alg::kRS384, "r"), R"({"exp":1})"), set, all_algs())
            .ok());

  const std::string secret_n = "c2VjcmV0LW51bWJlcnMtZ28taGVyZQ";
  for (const std::string& bad : {
           std::string(R"({"kty":"oct","k":"c2VjcmV0"})"),
           std::string(R"({"kty":"RSA","e":"AQAB"})"),
           R"({"kty":"RSA","e":"AQAB","n":")" + secret_n + R"("})",  // far too short
           std::string(R"({"kty":"EC","crv":"P-256","x":"AA","y":"AA"})"),
           std::string(R"({"kty":"EC","crv":"P-256","x":7})"),
           std::string(R"([1,2])"),
           std::string(R"({"kty":"RSA")"),
       }) {
    INFO(bad);
    const auto message = message_of([&] { (void)Key::parse(bad); });
    CHECK(message.find(secret_n) == std::string::npos);
  }
  // use, alg and key_ops that are not for our signatures.
  auto with = [&](const std::string& extra) {
    return pub_jwk.substr(0, pub_jwk.size() - 1) + "," + extra + "}";
  };
  const auto no_alg = Key(pub).public_jwk("k", Alg::kES256);
  CHECK_THROWS_AS(Key::parse(with(R"("key_ops":["encrypt"])")), std::runtime_error);
  CHECK_NOTHROW(Key::parse(with(R"("key_ops":["verify"])")));
  CHECK_THROWS_AS(Key::parse(R"({"kty":"EC","use":"enc")" + no_alg.substr(11)), std::runtime_error);
}

TEST_CASE("jose KeySet: usable keys kept, the others skipped and not a JWKS throws") {
  const Key rsa = Key::generate(Alg::kRS256);
  const Key p384 = Key::generate(Alg::kES384);
  const Key p256 = Key::generate(Alg::kES256);
  cjose_err err{};
  cjose_jwk_t* p521 = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_521, &err);
  REQUIRE(p521 != nullptr);
  char* p521_text = cjose_jwk_to_json(p521, false, &err);
  const std::string p521_jwk = p521_text;
  free(p521_text);
  cjose_jwk_release(p521);
  // p256's JWK with one more member: "use":"enc", a foreign alg, ...
  const auto p256_jwk = p256.public_jwk("x", Alg::kES256);
  auto p256_with = [&](const std::string& kid, const std::string& member) {
    auto jwk = json(p256_jwk);
    auto& a = jwk.GetAllocator();
    jwk["kid"].SetString(kid.c_str(), a);
    jwk.RemoveMember("alg");
    rapidjson::Document extra;
    extra.Parse(("{" + member + "}").c_str());
    // Deep copies: extra's strings live in extra's allocator, which goes first.
    for (auto& m : extra.GetObject())
      jwk.AddMember(rapidjson::Value(m.name, a), rapidjson::Value(m.value, a), a);
    rapidjson::StringBuffer b;
    rapidjson::Writer<rapidjson::StringBuffer> w(b);
    jwk.Accept(w);
    return std::string(b.GetString(), b.GetSize());
  };
  std::string doc = R"({"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"oct"},)";
  doc += rsa.public_jwk("rsa", Alg::kRS256) + ",";
  doc += p384.public_jwk("ec", Alg::kES384) + ",";
  doc += p521_jwk + ",";
  doc += R"({"kty":"RSA","e":"AQAB","kid":"no-n"},"a string",7,)";
  for (const auto& [kid, member] : std::vector<std::pair<std::string, std::string>>{
           {"enc", R"("use":"enc")"},
           {"es384", R"("alg":"ES384")"},
           {"hs256", R"("alg":"HS256")"},
           {"ops", R"("key_ops":["encrypt"])"},
           {"es256", R"("alg":"ES256","key_ops":["verify"])"}}) {
    doc += p256_with(kid, member) + ",";
  }
  // No kid: found by its thumbprint.
  doc += R"({"kty":"EC","crv":"P-256","x":")" + std::string(json(p256_jwk)["x"].GetString()) +
         R"(","y":")" + std::string(json(p256_jwk)["y"].GetString()) + R"("}]})";
  const auto set = KeySet::parse(doc);
  CHECK(set.size() == 4);
  std::optional<Alg> alg;
  REQUIRE(set.find("rsa", &alg) != nullptr);
  CHECK(alg == Alg::kRS256);
  CHECK(set.find("ec") != nullptr);
  REQUIRE(set.find("es256", &alg) != nullptr);
  CHECK(alg == Alg::kES256);
  CHECK(set.find(p256.thumbprint()) != nullptr);
  for (const char* skipped : {"oct", "no-n", "enc", "es384", "hs256", "ops"})
    CHECK(set.find(skipped) == nullptr);
  CHECK(set.find("") == nullptr);  // more than one key: no guessing

  CHECK(KeySet::parse(R"({"keys":[]})").empty());
  for (const char* not_jwks :
       {"", "[]", "{}", R"({"keys":{}})", R"({"keys":"x"})", "not json", R"({"keys":[]} trailing)"})
    CHECK_THROWS_AS(KeySet::parse(not_jwks), std::runtime_error);
}

}  // namespace
}  // namespace fbr::server::jose
