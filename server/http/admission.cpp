#include "server/http/admission.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/url/parse.hpp>
#include <string>
#include <utility>

#include "core/text.hpp"
#include "core/when.hpp"
#include "server/http/auth.hpp"

namespace fbr::server {

std::string header_token(const RequestHeader& request) {
  if (auto it = request.find("verification-token"); it != request.end()) {
    return std::string(core::trim_blanks(it->value()));
  }
  if (auto it = request.find(http::field::authorization); it != request.end()) {
    std::string_view value = core::trim_blanks(it->value());
    if (value.size() > 7 && core::lower_ascii(value.substr(0, 7)) == "bearer ") {
      return std::string(core::trim_blanks(value.substr(7)));
    }
  }
  return {};
}

bool is_json_content_type(std::string_view content_type) {
  // Compared without case and without a lowered copy (an allocation per request).
  const std::string_view media = core::trim_blanks(content_type.substr(0, content_type.find(';')));
  if (media.empty()) return true;
  const auto is = [](std::string_view a, std::string_view b) {
    return boost::beast::iequals(a, b);
  };
  return is(media, "application/json") || is(media, "application/fhir+json") ||
         (media.size() > 5 && is(media.substr(media.size() - 5), "+json"));
}

bool token_valid(std::string_view token, const std::vector<std::string>& tokens) {
  if (token.empty()) return false;
  // Compare against every configured token without stopping early: timing tells nothing.
  bool valid = false;
  for (const auto& t : tokens)
    valid |= core::constant_time_equal(token, t);
  return valid;
}

Reply Admission::over_limit_reply() const {
  if (over_limit == OverLimit::kUnauthorized) return unauthorized_reply();
  return error_reply(http::status::payload_too_large, "payload too large",
                     "the limit is " + std::to_string(body_limit) + " bytes");
}

Admission admit(const RequestHeader& header, const BodyFraming& framing,
                const config::Config& config, const Authenticator& auth,
                std::string_view webhook_path, std::int64_t now_unix_s, bool may_refetch) {
  Admission admission;
  // Everything but an authenticated POST to the webhook takes at most a small body: a challenge
  // (which may carry its token inside), a token request, or nothing at all (/healthz, /metrics,
  // a 404).
  admission.body_limit = config.limits.max_unauthenticated_body_bytes;
  const auto url = boost::urls::parse_origin_form(header.target());
  if (url && url->path() == webhook_path) {
    const std::string token = header_token(header);
    if (token.empty()) {
      admission.over_limit = OverLimit::kUnauthorized;
    } else {
      const AuthCheck check = auth.check(token, now_unix_s, may_refetch);
      if (check.pending()) {
        admission.await_keys = check.await_keys;
        return admission;
      }
      if (!check.ok()) {
        admission.early = unauthorized_reply();
        admission.reason = check.reason;
        return admission;
      }
      if (header.method() == http::verb::post) admission.body_limit = config.max_body_bytes;
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

Admission admit(const RequestHeader& header, const BodyFraming& framing,
                const config::Config& config, std::string_view webhook_path) {
  const Authenticator auth(config.verification_tokens);
  return admit(header, framing, config, auth, webhook_path, unix_now());
}

namespace {

EventAdmission answered(EventOutcome outcome, Reply reply) {
  EventAdmission admission;
  admission.outcome = outcome;
  admission.reply = std::move(reply);
  return admission;
}

}  // namespace

EventAdmission admit_event(const RequestHeader& header, std::string body,
                           const config::Config& config, Receipt receipt) {
  const Authenticator auth(config.verification_tokens);
  return admit_event(header, std::move(body), config, auth, unix_now(), std::move(receipt));
}

EventAdmission admit_event(const RequestHeader& header, std::string body,
                           const config::Config& config, const Authenticator& auth,
                           std::int64_t now_unix_s, Receipt receipt) {
  const auto refused = [](std::string_view reason) {
    EventAdmission admission = answered(EventOutcome::kUnauthorized, unauthorized_reply());
    admission.reason = reason;
    return admission;
  };
  // Authenticate before parsing when the token came in a header (Redox always sends it there):
  // a wrong token costs no parse. Only a body without a header token may be a challenge that
  // carries its token inside, and a challenge is answered only for a shared token.
  std::string token = header_token(header);
  std::optional<core::Challenge> challenge;
  bool shared = false;
  if (token.empty()) {
    challenge = core::parse_challenge(body);
    if (challenge && challenge->token) token = *challenge->token;
    shared = auth.shared_token_valid(token);
    if (!shared) return refused(token.empty() ? "no token" : "wrong token");
  } else {
    // The header-time step checked (and cached) this token already; no second refetch here.
    const AuthCheck check = auth.check(token, now_unix_s, false);
    if (!check.ok()) return refused(check.reason.empty() ? "wrong token" : check.reason);
    shared = check.via == AuthCheck::Via::kSharedToken;
  }
  // An event is parsed once; only a body that is not a valid event can be a challenge (a
  // challenge has no Meta), so the common case costs one parse.
  core::ParseResult parsed;
  if (!challenge) {
    parsed = core::parse_event(body);
    if (!parsed.ok()) challenge = core::parse_challenge(body);
  }
  if (challenge) {
    if (!shared) return refused("a challenge needs the verification token");
    return answered(EventOutcome::kChallenge, challenge_reply(challenge->challenge));
  }
  if (!is_json_content_type(header[http::field::content_type])) {
    return answered(EventOutcome::kUnsupportedMediaType,
                    error_reply(http::status::unsupported_media_type, "unsupported media type",
                                "send application/json or application/fhir+json"));
  }

  EventAdmission admission;
  CommitRequest& commit = admission.commit;
  if (!parsed.ok()) {
    if (config.invalid_payloads == config::InvalidPayloads::kReject) {
      admission.outcome = EventOutcome::kRejected;
      admission.reply = invalid_payload_reply(parsed.errors);
    } else {
      // Quarantine: keep the body and its errors durably, answer 200 so Redox's queue moves on.
      admission.outcome = EventOutcome::kQuarantined;
      commit.quarantine = true;
      commit.body = std::move(body);
      commit.errors_json = diagnostics_json(parsed.errors);
      commit.receipt = std::move(receipt);
    }
    admission.parsed = std::move(parsed);
    return admission;
  }

  const core::Event& event = *parsed.event;
  admission.outcome = EventOutcome::kAccepted;
  if (!event.attempt_id().empty()) receipt.attempt_id = event.attempt_id();
  commit.key = event.key;
  commit.log_id = event.log_id();
  commit.status = event.status;
  commit.test = event.meta.test;
  commit.output_count = static_cast<std::int64_t>(event.output.size());
  commit.body = std::move(body);
  commit.receipt = std::move(receipt);
  for (const auto& handler : config.handlers) {
    if (core::matches(handler.when, event)) commit.handlers.push_back(handler.name);
  }
  admission.parsed = std::move(parsed);
  return admission;
}

}  // namespace fbr::server
