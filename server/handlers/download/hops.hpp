#pragma once
// One request of a transfer with its redirects followed here, one hop at a time (libcurl follows
// none): each hop's host held to the egress policy before it is asked and its address in the
// Guard, the access token only where the policy says (Policy::token_for) and never on a redirect
// to another host, port or scheme. Attachments use it (attachment_transfer.hpp); transfer.cpp's
// loop for files does the same steps inline.
#include <curl/curl.h>

#include <functional>
#include <optional>
#include <string>

#include "server/handlers/download/token.hpp"
#include "server/handlers/download/transfer.hpp"
#include "server/support/curl.hpp"
#include "server/support/egress.hpp"

namespace fbr::server::download {

/// What the request came to.
struct HopOutcome {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string host;                           ///< of the hop that answered
  std::optional<TokenSession::Token> bearer;  ///< sent to the hop that answered
  std::string no_token;                       ///< why that hop got none
  /// Set when the request ended without an answer to use (a refused hop, an unusable redirect,
  /// too many of them, no token to be had), `why` saying so.
  std::optional<Failure> failure;
  std::string why;
};

/// Requests `url` (whose target is `first`) on `h`, following redirects. `hop` runs before each
/// hop's request: it adds that request's own headers and points the handle's callbacks at a
/// fresh per-hop state. `error` is the handle's error buffer; `requests` counts the requests.
HopOutcome request_following_redirects(CURL* h, egress::Guard& guard,
                                       const TransferSettings& settings, const EventContext& event,
                                       const std::string& url, const egress::Target& first,
                                       char* error, int& requests,
                                       const std::function<void(HeaderList&)>& hop);

/// A token that cannot be had is worth another attempt, unless the egress policy refused the
/// token endpoint (TokenError::permanent).
Failure token_failure(const std::exception& e);

}  // namespace fbr::server::download
