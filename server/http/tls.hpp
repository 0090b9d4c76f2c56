#pragma once
// HTTPS settings: an OpenSSL server context with TLS 1.2+ and modern ciphers only.
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"

namespace fbr::server {

using TlsContext = boost::asio::ssl::context;

/// Loads the PEM certificate chain and private key into a new server context. On failure,
/// `error` names the file and what is wrong with it, and the result is null.
std::shared_ptr<TlsContext> make_tls_context(const config::Tls& tls, std::string& error);

}  // namespace fbr::server
