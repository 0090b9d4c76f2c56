// `keys generate`: a new signing key for SMART Backend Services / signed webhooks. The private
// half goes to a file only its owner can read, from the first byte (created 0600 with O_EXCL,
// never widened later); the public half is printed as the JWKS to register with Redox or the EHR.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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

// A new file, 0600; false when anything (a file, a symlink) is already at that path. Throws on
// any other failure.
bool write_new_file(const std::filesystem::path& file, std::string_view bytes) {
  posix::Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid() && errno == EEXIST) return false;
  if (!fd.valid()) posix::throw_errno("cannot create " + file.string());
  try {
    // The umask can only take bits away; this makes it exactly owner read/write.
    if (::fchmod(fd.get(), 0600) != 0) posix::throw_errno("chmod " + file.string());
    posix::write_all(fd.get(), bytes, "write " + file.string());
    posix::sync(fd.get(), file.string());
    if (::close(fd.release()) != 0) posix::throw_errno("close " + file.string());
  } catch (...) {
    ::unlink(file.c_str());
    throw;
  }
  posix::sync_dir(file.parent_path().empty() ? "." : file.parent_path());
  return true;
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
    std::cerr << "fhir-bulk-receiver: keys generate: " << file.string()
              << " already exists; refusing to overwrite a key (--force replaces it)\n";
    return kExitUsage;
  }
  try {
    const auto key = jose::Key::generate(*alg);
    const auto pem = key.private_pem();
    if (force) {
      // A fresh 0600 temp file renamed over the old one: never a moment of a wider mode.
      posix::write_file_atomically(dir, file.filename().string(), pem);
    } else if (!write_new_file(file, pem)) {
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
    if (errno == EEXIST && !force) {
      // Created between the check and the open: still refused.
      std::cerr << "fhir-bulk-receiver: keys generate: " << file.string()
                << " already exists; refusing to overwrite a key (--force replaces it)\n";
      return kExitUsage;
    }
    std::cerr << "fhir-bulk-receiver: keys generate: " << e.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace fbr::server
