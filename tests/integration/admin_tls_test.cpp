// The admin listener over HTTPS with admin.tls of its own (the webhook listener stays plain): the
// login's cookie is Secure there, and a plain-HTTP client gets no answer.
#include <doctest/doctest.h>

#include <string>

#include "tests/integration/admin_support.hpp"
#include "tests/integration/hardening_support.hpp"

namespace fbr::itest::admin {
namespace {

using hardening::have_program;
using hardening::make_test_pki;
using hardening::run_process;

TEST_CASE("admin tls: admin.tls serves the console over HTTPS with a Secure session cookie") {
  if (!have_program("curl") || !have_program("openssl")) {
    return fbr::test::skip_test("curl and openssl are needed");
  }
  for (const auto& backend : backends()) {
    CAPTURE(backend);
    TempDir pki_dir;
    const auto pki = make_test_pki(pki_dir.path());
    ConsoleOptions options;
    options.admin_members = R"("tls": {"cert_file": ")" + pki.server_cert.string() +
                            R"(", "key_file": ")" + pki.server_key.string() + R"("})";
    Console console(backend, options);
    const std::string base = "https://127.0.0.1:" + std::to_string(console.admin_port());
    const auto login =
        run_process({"curl", "-sS", "-i", "--cacert", pki.ca_cert.string(), "-H",
                     "Content-Type: application/json", "--data",
                     R"({"token":")" + std::string(kAdminToken) + R"("})", base + "/api/login"});
    INFO(login.output());
    REQUIRE(login.exit_code == 0);
    CHECK(login.out.find("HTTP/1.1 204") == 0);
    CHECK(login.out.find("; Secure") != std::string::npos);
    CHECK(login.out.find("HttpOnly") != std::string::npos);
    const auto status =
        run_process({"curl", "-sS", "--cacert", pki.ca_cert.string(), "-H",
                     "Authorization: Bearer " + std::string(kAdminToken), base + "/api/status"});
    CHECK(status.out.find(R"("backend":")" + backend) != std::string::npos);
    // The hostile twin: plain HTTP to the TLS port is no way in.
    const auto plain =
        run_process({"curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                     "http://127.0.0.1:" + std::to_string(console.admin_port()) + "/api/status"});
    CHECK(plain.out != "200");
    // The webhook listener is still plain HTTP.
    CHECK(http(console.server().port(), get("/healthz")).status == 200);
  }
}

}  // namespace
}  // namespace fbr::itest::admin
