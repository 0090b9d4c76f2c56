#include "server/http/oauth_token.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <boost/url/encoding_opts.hpp>
#include <boost/url/pct_string_view.hpp>

#include "core/text.hpp"

namespace fbr::server {
namespace {

/// application/x-www-form-urlencoded text decoded (%XX, '+' is a space); nullopt when a '%' is
/// not followed by two hex digits.
std::optional<std::string> form_decode(std::string_view text) {
  const auto pct = boost::urls::make_pct_string_view(text);
  if (!pct) return std::nullopt;
  return pct->decode(boost::urls::encoding_opts(/*space_as_plus=*/true));
}

/// RFC 6749 §5.2: {"error": code}, no-store, and the Basic challenge when Basic was tried.
TokenAnswer oauth_error(http::status status, std::string_view code, bool basic = false) {
  TokenAnswer answer;
  answer.error = code;
  answer.reply.status = status;
  answer.reply.body = std::string(R"({"error":")") + std::string(code) + "\"}";
  answer.reply.cache_control = "no-store";
  if (basic) answer.reply.www_authenticate = R"(Basic realm="fhir-bulk-receiver")";
  return answer;
}

struct Credentials {
  std::string id;
  std::string secret;
};

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
std::optional<Credentials> basic_credentials(std::string_view value) {
  std::string text(core::trim_blanks(value.substr(6)));
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  while (!text.empty() && text.back() == '=')
    text.pop_back();
  const auto decoded = jose::base64url_decode(text);
  if (!decoded) return std::nullopt;
  const auto colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  auto id = form_decode(std::string_view(*decoded).substr(0, colon));
  auto secret = form_decode(std::string_view(*decoded).substr(colon + 1));
  if (!id || !secret) return std::nullopt;
  return Credentials{std::move(*id), std::move(*secret)};
}

/// The client whose id and secret both match, comparing with every client in constant time.
const OAuthClientSecret* authenticate(const TokenEndpoint& endpoint, const Credentials& given) {
  const OAuthClientSecret* found = nullptr;
  for (const auto& client : endpoint.clients) {
    const bool id = core::constant_time_equal(given.id, client.client_id);
    const bool secret = core::constant_time_equal(given.secret, client.secret);
    if (id & secret) found = &client;
  }
  return found;
}

}  // namespace

std::optional<std::vector<std::pair<std::string, std::string>>> parse_form(std::string_view body) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!body.empty()) {
    const auto amp = body.find('&');
    const std::string_view part = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    auto key = form_decode(part.substr(0, eq));
    auto value =
        form_decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
    if (!key || !value) return std::nullopt;
    pairs.emplace_back(std::move(*key), std::move(*value));
  }
  return pairs;
}

std::string own_token_claims(std::string_view client_id, std::int64_t now_unix_s,
                             std::uint32_t ttl_s, std::string_view jti) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("iss");
  w.String(kOwnIssuer.data(), static_cast<rapidjson::SizeType>(kOwnIssuer.size()));
  w.Key("sub");
  w.String(client_id.data(), static_cast<rapidjson::SizeType>(client_id.size()));
  w.Key("aud");
  w.String(kOwnAudience.data(), static_cast<rapidjson::SizeType>(kOwnAudience.size()));
  w.Key("iat");
  w.Int64(now_unix_s);
  w.Key("exp");
  w.Int64(now_unix_s + ttl_s);
  w.Key("jti");
  w.String(jti.data(), static_cast<rapidjson::SizeType>(jti.size()));
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

TokenAnswer answer_token_request(const RequestHeader& header, std::string_view body,
                                 const TokenEndpoint& endpoint, std::int64_t now_unix_s,
                                 std::string_view jti) {
  if (header.method() != http::verb::post) {
    TokenAnswer answer;
    answer.error = "method";
    answer.reply = error_reply(http::status::method_not_allowed, "method not allowed");
    answer.reply.allow = "POST";
    return answer;
  }
  const std::string_view type = header[http::field::content_type];
  if (core::lower_ascii(core::trim_blanks(type.substr(0, type.find(';')))) !=
      "application/x-www-form-urlencoded") {
    return oauth_error(http::status::bad_request, "invalid_request");
  }
  const auto form = parse_form(body);
  if (!form) return oauth_error(http::status::bad_request, "invalid_request");
  // RFC 6749 §3.2: no parameter more than once.
  std::optional<std::string> grant_type, form_id, form_secret;
  for (const auto& [key, value] : *form) {
    std::optional<std::string>* slot = key == "grant_type"      ? &grant_type
                                       : key == "client_id"     ? &form_id
                                       : key == "client_secret" ? &form_secret
                                                                : nullptr;
    if (slot == nullptr) continue;
    if (slot->has_value()) return oauth_error(http::status::bad_request, "invalid_request");
    *slot = value;
  }
  if (!grant_type) return oauth_error(http::status::bad_request, "invalid_request");
  if (*grant_type != "client_credentials") {
    return oauth_error(http::status::bad_request, "unsupported_grant_type");
  }

  const std::string_view authorization = core::trim_blanks(header[http::field::authorization]);
  const bool basic =
      authorization.size() > 6 && core::lower_ascii(authorization.substr(0, 6)) == "basic ";
  Credentials given;
  if (basic) {
    // §2.3: one client authentication method per request.
    if (form_secret) return oauth_error(http::status::bad_request, "invalid_request");
    auto credentials = basic_credentials(authorization);
    if (!credentials) return oauth_error(http::status::unauthorized, "invalid_client", true);
    if (form_id && *form_id != credentials->id) {
      return oauth_error(http::status::bad_request, "invalid_request");
    }
    given = std::move(*credentials);
  } else {
    if (!form_id || !form_secret) return oauth_error(http::status::bad_request, "invalid_request");
    given = Credentials{*form_id, *form_secret};
  }
  const OAuthClientSecret* client = authenticate(endpoint, given);
  if (client == nullptr) return oauth_error(http::status::unauthorized, "invalid_client", basic);

  jose::SignOptions options;
  options.alg = endpoint.signing.alg;
  options.kid = endpoint.signing.kid;
  const std::string token =
      jose::sign(endpoint.signing.key, options,
                 own_token_claims(client->client_id, now_unix_s, endpoint.ttl_s, jti));
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("access_token");
  w.String(token.data(), static_cast<rapidjson::SizeType>(token.size()));
  w.Key("token_type");
  w.String("Bearer");
  w.Key("expires_in");
  w.Uint(endpoint.ttl_s);
  w.EndObject();
  TokenAnswer answer;
  answer.client_id = client->client_id;
  answer.reply.body.assign(buffer.GetString(), buffer.GetSize());
  answer.reply.cache_control = "no-store";
  return answer;
}

}  // namespace fbr::server
