#include "server/handlers/download/hops.hpp"

namespace fbr::server::download {

Failure token_failure(const std::exception& e) {
  const auto* token = dynamic_cast<const TokenError*>(&e);
  return token != nullptr && token->permanent() ? Failure::kPermanent : Failure::kTransient;
}

HopOutcome request_following_redirects(CURL* h, egress::Guard& guard,
                                       const TransferSettings& settings, const EventContext& event,
                                       const std::string& url, const egress::Target& first,
                                       char* error, int& requests,
                                       const std::function<void(HeaderList&)>& hop) {
  HopOutcome out;
  std::string current = url;
  std::string error_text;
  std::optional<HeaderList> headers;  // in use until the hop's request is done
  const auto fail = [&](Failure kind, std::string why, int n) {
    if (n > 0) why = "redirect to " + url_for_messages(current) + ": " + why;
    out.failure = kind;
    out.why = std::move(why);
    return out;
  };
  for (int n = 0;; ++n) {
    const auto target = n == 0 ? std::optional(first) : egress::parse_target(current, error_text);
    if (!target) return fail(Failure::kPermanent, error_text, n);
    out.host = target->host;
    if (std::string refused = settings.policy.check_host(*target); !refused.empty()) {
      return fail(Failure::kPermanent, refused, n);
    }
    headers.emplace();
    out.bearer.reset();
    out.no_token.clear();
    if (event.token == nullptr) {
      out.no_token = "the event's requiresAccessToken is not true";
    } else if (!target->same_origin(first)) {
      out.no_token = "a redirect to another host, port or scheme gets no token";
    } else if (const auto decision = settings.policy.token_for(*target, event.token_hosts);
               !decision.send) {
      out.no_token = decision.why_not;
    } else {
      try {
        out.bearer = event.token->current();
      } catch (const std::exception& e) {
        out.failure = token_failure(e);
        out.why = std::string("access token: ") + e.what();
        return out;
      }
      headers->add("Authorization: Bearer " + out.bearer->value);
    }
    hop(*headers);
    curl_easy_setopt(h, CURLOPT_URL, current.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers->get());
    guard.set_target(*target, out.bearer.has_value() && target->scheme == "http");
    error[0] = '\0';
    ++requests;
    out.code = curl_easy_perform(h);
    out.status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out.status);
    if (out.code != CURLE_OK && !guard.refusal().empty()) {
      return fail(Failure::kPermanent, guard.refusal(), n);
    }
    const long s = out.status;
    const bool redirect = s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
    char* location = nullptr;
    if (out.code != CURLE_OK || !redirect ||
        curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &location) != CURLE_OK || location == nullptr) {
      return out;
    }
    if (n == egress::kMaxRedirects) {
      out.failure = Failure::kPermanent;
      out.why = "more than " + std::to_string(egress::kMaxRedirects) + " redirects (the last to " +
                url_for_messages(location) + ")";
      return out;
    }
    current = location;
  }
}

}  // namespace fbr::server::download
