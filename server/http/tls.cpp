#include "server/http/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <fstream>

namespace fbr::server {
namespace {

std::string openssl_reason() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

}  // namespace

std::shared_ptr<TlsContext> make_tls_context(const config::Tls& tls, std::string& error) {
  namespace ssl = boost::asio::ssl;
  for (const auto* file : {&tls.cert_file, &tls.key_file}) {
    if (!std::ifstream(*file)) {
      error = "tls: cannot read " + *file + ": " + std::strerror(errno);
      return nullptr;
    }
  }
  auto ctx = std::make_shared<TlsContext>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                   SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // TLS 1.2: forward-secret AEAD suites only (TLS 1.3 suites are modern by construction).
  SSL_CTX_set_cipher_list(native,
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(native, tls.cert_file.c_str()) != 1) {
    error = "tls: bad certificate file " + tls.cert_file + ": " + openssl_reason();
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(native, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    error = "tls: bad key file " + tls.key_file + ": " + openssl_reason();
    return nullptr;
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    error = "tls: key file " + tls.key_file + " does not match certificate " + tls.cert_file +
            ": " + openssl_reason();
    return nullptr;
  }
  return ctx;
}

}  // namespace fbr::server
