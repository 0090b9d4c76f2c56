// The built-in token endpoint as a pure function (server/http/oauth_token.hpp): the form, both
// client authentication methods, RFC 6749's errors, and the token it signs.
#include "server/http/oauth_token.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace fbr;
using namespace fbr::server;

namespace {

constexpr std::int64_t kNow = 1'800'000'000;

const TokenEndpoint& endpoint() {
  static const jose::Key key = jose::Key::generate(jose::Alg::kES384);
  static const TokenEndpoint e{
      {{"redox", "pa:ss&word"}, {"other", "x"}}, {key, key.kid(), jose::Alg::kES384}, 120};
  return e;
}

RequestHeader token_header(std::string authorization = {},
                           std::string type = "application/x-www-form-urlencoded") {
  RequestHeader h;
  h.method(http::verb::post);
  h.target(kTokenPath);
  h.set(http::field::content_type, type);
  if (!authorization.empty()) h.set(http::field::authorization, authorization);
  return h;
}

TokenAnswer ask(const RequestHeader& h, std::string_view body) {
  return answer_token_request(h, body, endpoint(), kNow, "jti-1");
}

std::string basic(std::string_view encoded_id_colon_secret) {
  std::string b64 = jose::base64url_encode(encoded_id_colon_secret);
  for (char& c : b64)
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (b64.size() % 4 != 0)
    b64 += '=';
  return "Basic " + b64;
}

}  // namespace

TEST_CASE("oauth token: parse_form decodes + and %XX - a broken escape is refused") {
  const auto form = parse_form("a=b+c&&d=%41%3d&e");
  REQUIRE(form.has_value());
  REQUIRE(form->size() == 3);
  CHECK((*form)[0] == std::pair<std::string, std::string>{"a", "b c"});
  CHECK((*form)[1] == std::pair<std::string, std::string>{"d", "A="});
  CHECK((*form)[2] == std::pair<std::string, std::string>{"e", ""});
  CHECK_FALSE(parse_form("a=%4").has_value());
  CHECK_FALSE(parse_form("a=%zz").has_value());
  CHECK_FALSE(parse_form("a=%4").has_value());
}

TEST_CASE(
    "oauth token: client_secret_post and client_secret_basic get a signed token - wrong secrets "
    "get invalid_client") {
  const auto post = ask(
      token_header(), "grant_type=client_credentials&client_id=redox&client_secret=pa%3Ass%26word");
  REQUIRE(post.error.empty());
  CHECK(post.reply.status == http::status::ok);
  CHECK(post.reply.cache_control == "no-store");
  CHECK(post.client_id == "redox");
  CHECK(post.reply.body.find(R"("token_type":"Bearer","expires_in":120)") != std::string::npos);
  const auto start = post.reply.body.find(R"("access_token":")") + 16;
  const std::string token = post.reply.body.substr(start, post.reply.body.find('"', start) - start);
  jose::KeySet keys;
  keys.add(endpoint().signing.kid, endpoint().signing.key, jose::Alg::kES384);
  const jose::Alg algs[] = {jose::Alg::kES384};
  jose::ClaimRules rules{std::string(kOwnIssuer), std::string(kOwnAudience), kOwnLeeway, {}};
  const auto verified = jose::verify(token, keys, algs, rules, kNow + 60);
  REQUIRE(verified.ok());
  CHECK(verified.claims.sub == "redox");
  CHECK(verified.claims.exp == kNow + 120);
  CHECK(verified.claims.jti == "jti-1");
  CHECK(jose::verify(token, keys, algs, rules, kNow + 120 + 6).failure == jose::Failure::kExpired);

  // RFC 6749 2.3.1: id and secret form-urlencoded before base64.
  const auto by_basic =
      ask(token_header(basic("redox:pa%3Ass%26word")), "grant_type=client_credentials");
  CHECK(by_basic.reply.status == http::status::ok);
  CHECK(by_basic.client_id == "redox");

  const auto wrong =
      ask(token_header(), "grant_type=client_credentials&client_id=redox&client_secret=x");
  CHECK(wrong.reply.status == http::status::unauthorized);
  CHECK(wrong.reply.body == R"({"error":"invalid_client"})");
  CHECK(wrong.reply.www_authenticate.empty());
  // Another client's secret is not this one's.
  CHECK(
      ask(token_header(), "grant_type=client_credentials&client_id=redox&client_secret=x").error ==
      "invalid_client");
  const auto wrong_basic = ask(token_header(basic("redox:nope")), "grant_type=client_credentials");
  CHECK(wrong_basic.reply.status == http::status::unauthorized);
  CHECK(wrong_basic.reply.www_authenticate.starts_with("Basic"));
  CHECK(ask(token_header("Basic !!!"), "grant_type=client_credentials").error == "invalid_client");
}

TEST_CASE(
    "oauth token: grant type, missing or repeated fields, two methods, content type, method") {
  CHECK(ask(token_header(), "grant_type=password&client_id=redox&client_secret=x").error ==
        "unsupported_grant_type");
  for (const char* body : {"client_id=redox&client_secret=x", "grant_type=client_credentials",
                           "grant_type=client_credentials&client_id=redox",
                           "grant_type=client_credentials&grant_type=client_credentials&client_id="
                           "redox&client_secret=pa%3Ass%26word",
                           "grant_type=%"}) {
    const auto answer = ask(token_header(), body);
    CHECK_MESSAGE(answer.reply.status == http::status::bad_request, body);
    CHECK(answer.reply.body == R"({"error":"invalid_request"})");
  }
  CHECK(ask(token_header(basic("redox:pa%3Ass%26word")),
            "grant_type=client_credentials&client_secret=pa%3Ass%26word")
            .error == "invalid_request");
  CHECK(ask(token_header({}, "application/json"),
            "grant_type=client_credentials&client_id=redox&client_secret=pa%3Ass%26word")
            .error == "invalid_request");
  RequestHeader get = token_header();
  get.method(http::verb::get);
  const auto answer = ask(get, "");
  CHECK(answer.reply.status == http::status::method_not_allowed);
  CHECK(answer.reply.allow == "POST");
}
