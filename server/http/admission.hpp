#pragma once
// Admission, the gate every request crosses, in two pure steps (no socket, no journal, no clock):
//  1. admit(): once the header is in and before any body byte is kept, what may be read. A wrong
//     header token or an unauthenticated body past the small limit is answered (401) without the
//     body being read; only a valid header token opens the way to max_body_bytes.
//  2. admit_event(): once a POST to the webhook is read whole, its answer (401, challenge, 415,
//     400) or what to commit (the event with its matched handlers, or a quarantined body).
// Both live here because they are one gate with one set of rules (tokens, content types); the
// session calls the first, the router the second, and unit tests and the HTTP fuzz target both.
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/event.hpp"
#include "server/http/reply.hpp"
#include "server/journal/journal.hpp"

namespace fbr::server {

class Authenticator;
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
  /// early is a 401: why, for the log (never for the client).
  std::string_view reason;
  /// Set: nothing is decided yet (a JWT names a kid the JWKS lacks); wait for the key source to
  /// pass this generation, then admit again with may_refetch = false.
  std::optional<std::uint64_t> await_keys;

  [[nodiscard]] Reply over_limit_reply() const;
};

/// The decision for `header` (method, target, token headers) framed as `framing`, with the
/// config's limits and `auth`'s tokens and JWT rules at `now_unix_s`; `webhook_path` is the
/// endpoint that takes events.
Admission admit(const RequestHeader& header, const BodyFraming& framing,
                const config::Config& config, const Authenticator& auth,
                std::string_view webhook_path, std::int64_t now_unix_s, bool may_refetch = true);
/// The same with only the config's shared tokens (no JWT).
Admission admit(const RequestHeader& header, const BodyFraming& framing,
                const config::Config& config, std::string_view webhook_path);

/// What a POST to the webhook, read whole, comes to.
enum class EventOutcome {
  kUnauthorized,          ///< 401: no token, or a wrong one (header or challenge body)
  kChallenge,             ///< 200 echoing a verification challenge
  kUnsupportedMediaType,  ///< 415: a Content-Type that is not JSON
  kRejected,              ///< 400: not a valid event, and invalid_payloads is "reject"
  kQuarantined,           ///< not a valid event: commit the body with its errors, then 200
  kAccepted,              ///< a valid event: commit it with its matched handlers, then 200
};

struct EventAdmission {
  EventOutcome outcome = EventOutcome::kUnauthorized;
  /// The answer, for the outcomes answered without a commit.
  Reply reply;
  /// kUnauthorized: why ("no token", "wrong token", a JWT's reason_name), for the log.
  std::string_view reason;
  /// kQuarantined, kAccepted: what to commit (body, receipt, matched handler names).
  CommitRequest commit;
  /// The parse: errors when not valid, the event and its warnings when valid.
  core::ParseResult parsed;

  /// True when the outcome is answered only after the commit.
  [[nodiscard]] bool needs_commit() const {
    return outcome == EventOutcome::kQuarantined || outcome == EventOutcome::kAccepted;
  }
};

/// The decision for a POST to the webhook with `header` and its whole `body`, under `config`
/// (tokens, invalid_payloads, handlers and their `when`). `receipt` is how it arrived; its
/// attempt_id (which may be empty: the caller then generates one) is used when the event carries
/// none, and for a quarantined body.
EventAdmission admit_event(const RequestHeader& header, std::string body,
                           const config::Config& config, const Authenticator& auth,
                           std::int64_t now_unix_s, Receipt receipt);
/// The same with only the config's shared tokens (no JWT).
EventAdmission admit_event(const RequestHeader& header, std::string body,
                           const config::Config& config, Receipt receipt);

/// The token a request carries in `verification-token` or `Authorization: Bearer`, or empty.
std::string header_token(const RequestHeader& request);

/// True when `token` is one of `tokens` (constant-time for each; never stops early).
bool token_valid(std::string_view token, const std::vector<std::string>& tokens);

/// True for no Content-Type, application/json, application/fhir+json and any */*+json.
bool is_json_content_type(std::string_view content_type);

}  // namespace fbr::server
