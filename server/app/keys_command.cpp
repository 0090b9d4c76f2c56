// `keys generate`: a new signing key for SMART Backend Services / signed webhooks. The private
// half goes to a file only its owner can read, from the first byte (a 0600 temp file linked into
// place, never widened later); the public half is printed as the JWKS to register with Redox or the
// EHR.

#include <exception>
#include <filesystem>
#include <iostream>
#include <string>

#include "core/text.hpp"
#include "server/app/commands.hpp"
#include "server/support/jose.hpp"
#include "server/support/posix.hpp"

namespace fbr::server {
namespace {

std::string allowed_algs() {
  std::string out;
  for (const auto alg : jose::all_algs()) {
    if (!out.empty()) out += ", ";
    out += jose::alg_name(alg);
  }
  return out;
}

void refuse_existing(const std::filesystem::path& file) {
  std::cerr << "fhir-bulk-receiver: keys generate: " << file.string()
            << " already exists; refusing to overwrite a key (--force replaces it)\n";
}

}  // namespace

int keys_generate(const std::string& alg_text, const std::string& out, bool force) {
  const auto alg = jose::alg_from_name(alg_text);
  if (!alg) {
    std::cerr << "fhir-bulk-receiver: keys generate: unknown --alg " << core::printable(alg_text)
              << " (allowed: " << allowed_algs() << ")\n";
    return kExitUsage;
  }
  const std::filesystem::path file(out);
  const auto dir = file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::cerr << "fhir-bulk-receiver: keys generate: the directory " << dir.string()
              << " of --out does not exist (create it first, ideally mode 0700)\n";
    return kExitFailure;
  }
  if (!force &&
      std::filesystem::symlink_status(file, ec).type() != std::filesystem::file_type::not_found) {
    refuse_existing(file);
    return kExitUsage;
  }
  try {
    const auto key = jose::Key::generate(*alg);
    const auto pem = key.private_pem();
    // A fresh 0600 temp file, renamed over the old one (--force) or linked only where nothing
    // is: never a moment of a wider mode, never half a key.
    if (!posix::write_file_atomically(dir, file.filename().string(), pem,
                                      force ? posix::Existing::kReplace : posix::Existing::kKeep)) {
      // Created between the check and the write: still refused.
      refuse_existing(file);
      return kExitUsage;
    }
    const auto kid = key.thumbprint();
    std::cout << jose::jwks_json({{key, kid, *alg}}) << "\n";
    std::cerr << "wrote the private key to " << file.string() << " (PKCS#8 PEM, mode 0600); "
              << "register the JWKS above (kid " << kid << ", alg " << jose::alg_name(*alg)
              << ")\n";
    return kExitOk;
  } catch (const std::exception& e) {
    std::cerr << "fhir-bulk-receiver: keys generate: " << e.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace fbr::server
