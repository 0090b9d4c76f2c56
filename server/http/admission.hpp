#pragma once
// Header-time admission: what may be read of a request once its header is in and before any body
// byte is kept. One pure function, called by the session, the HTTP fuzz target and unit tests:
// a wrong header token or an unauthenticated body past the small limit is answered (401) without
// the body being read; only a valid header token opens the way to max_body_bytes.
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <cstdint>
#include <optional>
#include <string_view>

#include "config/config.hpp"
#include "server/http/reply.hpp"

namespace fbr::server {

using RequestHeader = http::request_header<>;

/// How the request's body is framed, as the parser read it from the header.
struct BodyFraming {
  std::optional<std::uint64_t> content_length;  ///< nullopt: none announced
  bool chunked = false;
};

/// The framing a Beast parser read from the header.
template <class Parser>
BodyFraming framing_of(const Parser& parser) {
  BodyFraming framing;
  if (const auto length = parser.content_length()) framing.content_length = *length;
  framing.chunked = parser.chunked();
  return framing;
}

/// Why a body may not grow past Admission::body_limit: the answer when it does.
enum class OverLimit {
  kTooLarge,      ///< 413: authenticated, past max_body_bytes (or an endpoint that takes no body)
  kUnauthorized,  ///< 401: no header token, past limits.max_unauthenticated_body_bytes
};

struct Admission {
  /// Set: answer this now, read no body (the connection is then closed when a body follows).
  std::optional<Reply> early;
  /// Otherwise: read at most this many body bytes; past it, over_limit_reply().
  std::uint64_t body_limit = 0;
  OverLimit over_limit = OverLimit::kTooLarge;
  /// `100 Continue` may be sent (the body is one we are willing to read whole).
  bool may_continue = false;

  [[nodiscard]] Reply over_limit_reply() const;
};

/// The decision for `header` (method, target, token headers) framed as `framing`, with the
/// config's tokens and limits; `webhook_path` is the endpoint that takes events.
Admission admit(const RequestHeader& header, const BodyFraming& framing,
                const config::Config& config, std::string_view webhook_path);

}  // namespace fbr::server
