#pragma once
// What the server answers: a status, a body and the few headers that vary by outcome. One place
// (reply.cpp) maps each outcome to its HTTP status and body.
#include <boost/beast/http/status.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.hpp"

namespace fbr::server {

namespace http = boost::beast::http;

struct Reply {
  http::status status = http::status::ok;
  std::string body;
  std::string content_type = "application/json";
  std::string allow;             ///< Allow header (405)
  std::string retry_after;       ///< Retry-After header (503)
  std::string cache_control;     ///< Cache-Control header (the token endpoint, the JWKS)
  std::string www_authenticate;  ///< WWW-Authenticate header (the token endpoint's 401)
  bool close = false;            ///< close the connection after this answer
};

Reply accepted_reply(std::string_view log_id, bool duplicate,
                     const std::vector<core::Diagnostic>& warnings);
Reply quarantined_reply(const std::string& request_id, const std::vector<core::Diagnostic>& errors);
Reply invalid_payload_reply(const std::vector<core::Diagnostic>& errors);
/// The longest challenge echoed back (Redox sends a UUID, 36 characters).
constexpr std::size_t kMaxChallengeBytes = 256;
/// 200 text/plain echoing `challenge` when it is 1 to kMaxChallengeBytes printable ASCII
/// characters; otherwise 400 saying so (nothing of it is echoed).
Reply challenge_reply(const std::string& challenge);
Reply unauthorized_reply();
Reply unavailable_reply(const std::string& why);
/// A JSON error body {"error": message} with the status; `detail` added when non-empty.
Reply error_reply(http::status status, const std::string& message, const std::string& detail = {});

/// The whole answer in one string, for one write: status line, Content-Type,
/// X-Content-Type-Options, X-Request-Id, Allow, Retry-After, Cache-Control, WWW-Authenticate,
/// Connection, Content-Length, body.
/// An answer to HEAD (`head`) has GET's headers, Content-Length included, and no body.
std::string serialize(const Reply& reply, unsigned version, bool keep_alive,
                      std::string_view request_id, bool head = false);

/// JSON array of {"path","message"} for diagnostics (also what quarantine stores).
std::string diagnostics_json(const std::vector<core::Diagnostic>& diagnostics);

}  // namespace fbr::server
