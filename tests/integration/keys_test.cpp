// `keys generate` through the real binary: the key file is 0600 PKCS#8, stdout is the JWKS to
// register (kid = RFC 7638 thumbprint), and what the written key signs verifies against the
// printed JWKS. Hostile twins: an existing file (or symlink) is never overwritten without --force,
// an unknown alg names the allowed ones, a missing directory is said plainly.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "server/support/jose.hpp"
#include "tests/integration/harness.hpp"

using namespace fbr::itest;
namespace jose = fbr::server::jose;

namespace {

unsigned mode_of(const std::filesystem::path& file) {
  struct stat st {};
  REQUIRE(::lstat(file.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// A token signed with the key in `file`, checked against the JWKS the command printed.
void check_round_trip(const std::filesystem::path& file, const std::string& jwks, jose::Alg alg) {
  const auto key = jose::Key::from_file(file);
  CHECK(key.is_private());
  CHECK(key.fits(alg));
  const auto keys = jose::KeySet::parse(jwks);
  REQUIRE(keys.size() == 1);
  jose::SignOptions options;
  options.alg = alg;
  options.kid = key.thumbprint();
  const auto token = jose::sign(key, options, R"({"iss":"us","exp":4102444800})");
  const std::array allowed{alg};
  CHECK(jose::verify_signature(token, keys, allowed).ok());
  // A key the JWKS does not hold does not verify under that kid.
  const auto stranger = jose::Key::generate(alg);
  CHECK(
      jose::verify_signature(jose::sign(stranger, options, R"({"exp":4102444800})"), keys, allowed)
          .failure == jose::Failure::kSignature);
}

}  // namespace

TEST_CASE("keys generate: ES384 and RS384 write a 0600 PKCS#8 key and print its JWKS") {
  TempDir dir;
  for (const jose::Alg alg : {jose::Alg::kES384, jose::Alg::kRS384}) {
    const std::string name(jose::alg_name(alg));
    CAPTURE(name);
    const auto file = dir.path() / (name + ".pem");
    const auto cli = run_cli({"keys", "generate", "--alg", name, "--out", file.string()});
    CAPTURE(cli.output());
    REQUIRE(cli.exit_code == 0);
    CHECK(mode_of(file) == 0600);
    const auto pem = read_file(file);
    CHECK(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    // stdout is the JWKS alone: one key, public members only, kid = thumbprint.
    const auto jwks = parse_json(cli.out);
    REQUIRE(jwks["keys"].IsArray());
    REQUIRE(jwks["keys"].Size() == 1);
    const auto& jwk = jwks["keys"][0];
    CHECK(json_str(jwks, "/keys/0/alg") == name);
    CHECK(json_str(jwks, "/keys/0/use") == "sig");
    CHECK(json_str(jwks, "/keys/0/kid") == jose::Key::from_file(file).thumbprint());
    CHECK(json_str(jwks, "/keys/0/kty") == (alg == jose::Alg::kES384 ? "EC" : "RSA"));
    for (const char* secret : {"d", "p", "q", "dp", "dq", "qi"})
      CHECK_FALSE(jwk.HasMember(secret));
    // The private key is in the file, not on the terminal.
    CHECK(cli.output().find("PRIVATE KEY") == std::string::npos);
    check_round_trip(file, cli.out, alg);
  }
  // The other four are accepted too, with the curve or size they ask for.
  for (const char* name : {"ES256", "RS256", "PS256", "PS384"}) {
    CAPTURE(name);
    const auto file = dir.path() / (std::string(name) + ".pem");
    const auto cli = run_cli({"keys", "generate", "--alg", name, "--out", file.string()});
    CAPTURE(cli.output());
    REQUIRE(cli.exit_code == 0);
    CHECK(mode_of(file) == 0600);
    check_round_trip(file, cli.out, *jose::alg_from_name(name));
  }
}

TEST_CASE("keys generate: an existing file is refused (exit 2) unless --force which keeps 0600") {
  TempDir dir;
  const auto file = dir.path() / "key.pem";
  write_file(file, "the old key\n");
  auto cli = run_cli({"keys", "generate", "--alg", "ES384", "--out", file.string()});
  CAPTURE(cli.output());
  CHECK(cli.exit_code == 2);
  CHECK(cli.err.find("already exists") != std::string::npos);
  CHECK(cli.out.empty());
  CHECK(read_file(file) == "the old key\n");

  // A symlink is not followed (nor replaced) either.
  const auto target = dir.path() / "elsewhere.pem";
  const auto link = dir.path() / "link.pem";
  std::filesystem::create_symlink(target, link);
  cli = run_cli({"keys", "generate", "--alg", "ES384", "--out", link.string()});
  CHECK(cli.exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(target));

  ::chmod(file.c_str(), 0644);
  cli = run_cli({"keys", "generate", "--alg", "ES384", "--out", file.string(), "--force"});
  CAPTURE(cli.output());
  REQUIRE(cli.exit_code == 0);
  CHECK(mode_of(file) == 0600);
  check_round_trip(file, cli.out, jose::Alg::kES384);
  // Nothing but the key is left in the directory (no temp file).
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path()))
    ++entries;
  CHECK(entries == 2);  // key.pem, link.pem
}

TEST_CASE(
    "keys generate: an unknown alg is refused naming the allowed ones and no file is written") {
  TempDir dir;
  const auto file = dir.path() / "key.pem";
  for (const char* alg : {"HS256", "none", "ES512", "es384", ""}) {
    CAPTURE(alg);
    const auto cli = run_cli({"keys", "generate", "--alg", alg, "--out", file.string()});
    CAPTURE(cli.output());
    CHECK(cli.exit_code == 2);
    for (const char* allowed : {"ES256", "ES384", "RS256", "RS384", "PS256", "PS384"})
      CHECK(cli.err.find(allowed) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(file));
  }
  // Missing options are usage errors too.
  CHECK(run_cli({"keys", "generate", "--alg", "ES384"}).exit_code == 2);
  CHECK(run_cli({"keys", "generate", "--out", file.string()}).exit_code == 2);
  CHECK(run_cli({"keys"}).exit_code == 2);
}

TEST_CASE("keys generate: --out in a missing directory is a clear error and nothing is created") {
  TempDir dir;
  const auto file = dir.path() / "no" / "such" / "key.pem";
  const auto cli = run_cli({"keys", "generate", "--alg", "RS384", "--out", file.string()});
  CAPTURE(cli.output());
  CHECK(cli.exit_code == 1);
  CHECK(cli.err.find("does not exist") != std::string::npos);
  CHECK(cli.err.find((dir.path() / "no" / "such").string()) != std::string::npos);
  CHECK(cli.out.empty());
  CHECK_FALSE(std::filesystem::exists(dir.path() / "no"));
}
