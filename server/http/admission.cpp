#include "server/http/admission.hpp"

#include <boost/url/parse.hpp>
#include <string>

#include "server/http/router.hpp"

namespace fbr::server {

Reply Admission::over_limit_reply() const {
  if (over_limit == OverLimit::kUnauthorized) return unauthorized_reply();
  return error_reply(http::status::payload_too_large, "payload too large",
                     "the limit is " + std::to_string(body_limit) + " bytes");
}

Admission admit(const RequestHeader& header, const BodyFraming& framing,
                const config::Config& config, std::string_view webhook_path) {
  Admission admission;
  // Everything but an authenticated POST to the webhook takes at most a small body: a challenge
  // (which may carry its token inside), or nothing at all (/healthz, /metrics, a 404).
  admission.body_limit = config.limits.max_unauthenticated_body_bytes;
  const auto url = boost::urls::parse_origin_form(header.target());
  if (url && url->path() == webhook_path) {
    const std::string token = header_token(header);
    if (token.empty()) {
      admission.over_limit = OverLimit::kUnauthorized;
    } else if (!token_valid(token, config.verification_tokens)) {
      admission.early = unauthorized_reply();
      return admission;
    } else if (header.method() == http::verb::post) {
      admission.body_limit = config.max_body_bytes;
    }
  }
  if (framing.content_length && *framing.content_length > admission.body_limit) {
    admission.early = admission.over_limit_reply();
    return admission;
  }
  // A chunked body has no length to check first: without a header token it gets no invitation
  // (a client that waits for one sends after its own timeout, and is cut at the limit all the
  // same).
  admission.may_continue = !(framing.chunked && admission.over_limit == OverLimit::kUnauthorized);
  return admission;
}

}  // namespace fbr::server
