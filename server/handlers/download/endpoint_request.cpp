#include "server/handlers/download/endpoint_request.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <cctype>

#include "core/text.hpp"
#include "server/handlers/download/token.hpp"
#include "server/support/curl.hpp"

namespace fbr::server::download {
namespace {

constexpr std::size_t kShownBytes = 200;  ///< of error_description or a body that is not JSON
constexpr std::size_t kShownCode = 64;    ///< of error and token_type
/// An expires_in past this is taken as this: the token is asked for again at least daily.
constexpr std::chrono::seconds kLongestLife{24 * 3600};

struct Collected {
  std::string body;
  bool too_large = false;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* c = static_cast<Collected*>(user);
  const std::size_t bytes = size * count;
  if (c->body.size() + bytes > kMaxEndpointAnswer) {
    c->too_large = true;
    return 0;  // CURLE_WRITE_ERROR: stop reading
  }
  c->body.append(data, bytes);
  return bytes;
}

/// `text` (from outside) made one bounded printable line, without any of `secrets`.
std::string shown_text(std::string_view text, std::size_t bound,
                       const std::vector<std::string>& secrets) {
  std::string out(text.substr(0, bound + 1));
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    for (std::size_t at = out.find(secret); at != std::string::npos; at = out.find(secret, at)) {
      out.replace(at, secret.size(), "<redacted>");
    }
  }
  out = core::printable(shown_body(out));
  if (out.size() > bound) out = out.substr(0, bound) + "...";
  return out;
}

/// The answer's JSON object, or nullopt.
std::optional<rapidjson::Document> json_object(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  return doc;
}

const rapidjson::Value* member(const rapidjson::Value& object, const char* name) {
  const auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

/// "<shown> answered <status>[: error[: description] | : <body>]" for an answer that is not a
/// success.
[[noreturn]] void throw_refusal(const EndpointRequest& request, const EndpointAnswer& answer) {
  std::string message = request.shown() + " answered " + std::to_string(answer.status);
  const auto doc = json_object(answer.body);
  const rapidjson::Value* error = doc ? member(*doc, "error") : nullptr;
  if (error != nullptr && error->IsString()) {
    message += ": " + shown_text(error->GetString(), kShownCode, request.secrets);
    const rapidjson::Value* description = member(*doc, "error_description");
    if (description != nullptr && description->IsString()) {
      message += ": " + shown_text(description->GetString(), kShownBytes, request.secrets);
    }
  } else if (std::string body = shown_text(answer.body, kShownBytes, request.secrets);
             !body.empty()) {
    message += ": " + body;
  }
  throw TokenError(message);
}

/// The 200 answer's JSON object; throws otherwise. A 200 body is never shown: it may hold a
/// token.
rapidjson::Document success_object(const EndpointRequest& request, const EndpointAnswer& answer) {
  if (answer.status != 200) throw_refusal(request, answer);
  auto doc = json_object(answer.body);
  if (!doc) {
    throw TokenError(request.shown() + " answered 200 with a body that is not a JSON object (" +
                     std::to_string(answer.body.size()) + " bytes)");
  }
  return std::move(*doc);
}

}  // namespace

std::string EndpointRequest::shown() const {
  return what + " " + url_for_messages(url);
}

std::string form_encode(std::string_view text) {
  // Everything but RFC 3986's unreserved characters as %XX: valid in a form and in Basic's halves.
  return boost::urls::encode(text, boost::urls::unreserved_chars);
}

EndpointAnswer call_endpoint(const EndpointClient& client, const EndpointRequest& request) {
  init_curl_once();
  const std::string shown = request.shown();
  std::string error_text;
  const auto target = egress::parse_target(request.url, error_text);
  if (!target) throw TokenError(shown + ": " + error_text, true);
  if (const std::string refused = client.policy.check_host(*target); !refused.empty()) {
    throw TokenError(shown + ": " + refused, true);
  }
  // A credential goes out and a token comes back: plain http only where a token may go so.
  if (const auto decision = client.policy.token_for(*target, {target->host}); !decision.send) {
    throw TokenError(shown + ": " + decision.why_not, true);
  }

  CurlHandle curl(curl_easy_init());
  if (!curl) throw TokenError(shown + ": cannot create a libcurl handle");
  CURL* h = curl.get();
  egress::Guard guard(client.policy, client.proxies);
  guard.install(h);
  guard.set_target(*target, target->scheme == "http");
  char error[CURL_ERROR_SIZE] = {};
  Collected collected;
  HeaderList headers;
  headers.add("Accept: application/json");
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_USERAGENT, "fhir-bulk-receiver/" FBR_VERSION);
  // A redirect would take the credential elsewhere: never followed.
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(client.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(client.timeout.count()));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &collected);
  if (!request.form.empty()) {
    headers.add("Content-Type: application/x-www-form-urlencoded");
    headers.add("Expect:");
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.form.size()));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.form.c_str());
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  if (!request.basic_user.empty()) {
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(h, CURLOPT_USERNAME, request.basic_user.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, request.basic_password.c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK && !guard.refusal().empty()) {
    throw TokenError(shown + ": " + guard.refusal(), true);
  }
  if (collected.too_large) {
    throw TokenError(shown + " answered with more than " + std::to_string(kMaxEndpointAnswer) +
                     " bytes");
  }
  if (code != CURLE_OK) throw TokenError(shown + ": " + curl_error_text(code, error));
  EndpointAnswer answer;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &answer.status);
  answer.body = std::move(collected.body);
  if (answer.status >= 300 && answer.status < 400) {
    throw TokenError(shown + " answered " + std::to_string(answer.status) +
                     " (a redirect, which is not followed)");
  }
  return answer;
}

IssuedToken issued_token(const EndpointRequest& request, const EndpointAnswer& answer) {
  const rapidjson::Document doc = success_object(request, answer);
  const std::string shown = request.shown() + " answered 200 ";
  const rapidjson::Value* token = member(doc, "access_token");
  if (token == nullptr || !token->IsString()) {
    throw TokenError(shown + "without an access_token string");
  }
  IssuedToken out;
  const auto clean = clean_token(std::string_view(token->GetString(), token->GetStringLength()));
  if (!clean) throw TokenError(shown + "with an access_token that is not a usable bearer token");
  out.access_token = *clean;
  if (const rapidjson::Value* type = member(doc, "token_type"); type != nullptr) {
    const std::string name = type->IsString() ? core::lower_ascii(type->GetString()) : "";
    if (name != "bearer") {
      throw TokenError(shown + "with token_type " +
                       (type->IsString() ? shown_text(type->GetString(), kShownCode, {})
                                         : std::string("that is not a string")) +
                       " (only bearer tokens are used)");
    }
  }
  if (const rapidjson::Value* expires = member(doc, "expires_in");
      expires != nullptr && !expires->IsNull()) {
    std::int64_t seconds = -1;
    if (expires->IsInt64()) {
      seconds = expires->GetInt64();
    } else if (expires->IsString()) {  // some servers send "3600"
      const std::string_view text(expires->GetString(), expires->GetStringLength());
      if (!text.empty() && text.size() < 10 &&
          std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        seconds = std::stoll(std::string(text));
      }
    }
    if (seconds < 0) {
      throw TokenError(shown + "with an expires_in that is not a number of seconds");
    }
    out.expires_in = std::min(std::chrono::seconds(seconds), kLongestLife);
  }
  return out;
}

std::string discovered_token_endpoint(const EndpointRequest& request,
                                      const EndpointAnswer& answer) {
  const rapidjson::Document doc = success_object(request, answer);
  const rapidjson::Value* endpoint = member(doc, "token_endpoint");
  if (endpoint == nullptr || !endpoint->IsString()) {
    throw TokenError(request.shown() + " has no token_endpoint string");
  }
  std::string url(endpoint->GetString(), endpoint->GetStringLength());
  if (!core::is_absolute_http_url(url)) {
    throw TokenError(request.shown() + ": its token_endpoint is not an absolute http(s) URL");
  }
  return url;
}

}  // namespace fbr::server::download
