// What a token endpoint's (and a SMART configuration's) answer means, and that no message shows
// a token, an assertion or a secret.
#include "server/handlers/download/endpoint_request.hpp"

#include <doctest/doctest.h>

#include <string>

#include "server/handlers/download/token.hpp"
#include "server/handlers/download/token_endpoint.hpp"

namespace fbr::server::download {
namespace {

EndpointRequest token_request() {
  EndpointRequest r;
  r.what = "token endpoint";
  r.url = "https://ehr.example/token?tenant=secret-query";
  r.secrets = {"the-assertion-xyz", "the-client-secret"};
  return r;
}

std::string error_of(const EndpointAnswer& answer) {
  try {
    (void)issued_token(token_request(), answer);
  } catch (const TokenError& e) {
    CHECK_FALSE(e.permanent());
    return e.what();
  }
  return "<no error>";
}

TEST_CASE("download auth: a token answer gives the token, its life and bearer only") {
  const auto t =
      issued_token(token_request(),
                   {200, R"({"access_token":"tok-1","token_type":"Bearer","expires_in":3600})"});
  CHECK(t.access_token == "tok-1");
  CHECK(t.expires_in == std::chrono::seconds(3600));
  CHECK(issued_token(token_request(), {200, R"({"access_token":"tok-2"})"}).expires_in ==
        std::chrono::seconds(300));
  CHECK(issued_token(token_request(), {200, R"({"access_token":"t","expires_in":"60"})"})
            .expires_in == std::chrono::seconds(60));
  CHECK(issued_token(token_request(), {200, R"({"access_token":"t","expires_in":99999999})"})
            .expires_in == std::chrono::hours(24));
}

TEST_CASE("download auth: refusals and garbage answers say what is wrong without the body") {
  CHECK(error_of({401, R"({"error":"invalid_client","error_description":"bad signature"})"}) ==
        "token endpoint https://ehr.example/token answered 401: invalid_client: bad signature");
  CHECK(error_of({400, R"({"error":"invalid_scope"})"}) ==
        "token endpoint https://ehr.example/token answered 400: invalid_scope");
  CHECK(error_of({503, "<html>down\n</html>"}) ==
        "token endpoint https://ehr.example/token answered 503: <html>down </html>");
  CHECK(error_of({200, "<html>login</html>"}) ==
        "token endpoint https://ehr.example/token answered 200 with a body that is not a JSON "
        "object (18 bytes)");
  CHECK(error_of({200, R"({"token_type":"bearer"})"}).ends_with("without an access_token string"));
  CHECK(error_of({200, R"({"access_token":"two words"})"})
            .ends_with("with an access_token that is not a usable bearer token"));
  CHECK(error_of({200, R"({"access_token":"t","token_type":"mac"})"})
            .ends_with("with token_type mac (only bearer tokens are used)"));
  CHECK(error_of({200, R"({"access_token":"t","expires_in":-1})"})
            .ends_with("with an expires_in that is not a number of seconds"));
  CHECK(error_of({200, R"({"access_token":"t","expires_in":"soon"})"})
            .ends_with("with an expires_in that is not a number of seconds"));
}

TEST_CASE("download auth: an answer's words are bounded, printable and never a secret") {
  const std::string echoed =
      error_of({401, R"({"error":"invalid_client","error_description":"got the-assertion-xyz and )"
                     R"(the-client-secret\u001b[2J"})"});
  CHECK(echoed.find("the-assertion-xyz") == std::string::npos);
  CHECK(echoed.find("the-client-secret") == std::string::npos);
  CHECK(echoed.find("<redacted>") != std::string::npos);
  CHECK(echoed.find('\x1b') == std::string::npos);
  const std::string long_text = error_of(
      {401, R"({"error":"invalid_client","error_description":")" + std::string(5000, 'x') + "\"}"});
  CHECK(long_text.size() < 400);
  CHECK(long_text.ends_with("..."));
  // A 200 body is never shown: it may hold a token.
  CHECK(error_of({200, R"({"access_token":12345, "refresh":"rt-secret"})"}).find("rt-secret") ==
        std::string::npos);
}

TEST_CASE("download auth: a SMART configuration gives its token_endpoint") {
  EndpointRequest r;
  r.what = "SMART configuration";
  r.url = "https://ehr.example/fhir/.well-known/smart-configuration";
  CHECK(discovered_token_endpoint(r, {200, R"({"token_endpoint":"https://ehr.example/t"})"}) ==
        "https://ehr.example/t");
  CHECK_THROWS_WITH(discovered_token_endpoint(r, {200, R"({"issuer":"x"})"}),
                    "SMART configuration https://ehr.example/fhir/.well-known/smart-configuration "
                    "has no token_endpoint string");
  CHECK_THROWS_WITH(discovered_token_endpoint(r, {200, R"({"token_endpoint":"/relative"})"}),
                    "SMART configuration https://ehr.example/fhir/.well-known/smart-configuration: "
                    "its token_endpoint is not an absolute http(s) URL");
  CHECK_THROWS_WITH(discovered_token_endpoint(r, {404, "no"}),
                    "SMART configuration https://ehr.example/fhir/.well-known/smart-configuration "
                    "answered 404: no");
}

TEST_CASE("download auth: form encoding and how long a token is used") {
  CHECK(form_encode("system/*.read patient/Observation.rs") ==
        "system%2F%2A.read%20patient%2FObservation.rs");
  CHECK(form_encode("a-b_c.d~e:f&g=h+%") == "a-b_c.d~e%3Af%26g%3Dh%2B%25");
  CHECK(TokenEndpoint::usable_for(std::chrono::seconds(300)) == std::chrono::seconds(270));
  CHECK(TokenEndpoint::usable_for(std::chrono::seconds(60)) == std::chrono::seconds(54));
  CHECK(TokenEndpoint::usable_for(std::chrono::seconds(3600)) == std::chrono::seconds(3570));
  CHECK(TokenEndpoint::usable_for(std::chrono::seconds(0)) == std::chrono::seconds(0));
}

TEST_CASE("download auth: the egress policy refuses a token URL before any connection") {
  config::Egress egress;
  egress.allowed_hosts = {"ehr.example"};
  EndpointClient client;
  client.policy = egress::Policy(egress);
  EndpointRequest r = token_request();
  r.url = "https://elsewhere.example/token";
  try {
    (void)call_endpoint(client, r);
    FAIL("no refusal");
  } catch (const TokenError& e) {
    CHECK(e.permanent());
    CHECK(std::string(e.what()) ==
          "token endpoint https://elsewhere.example/token: refused host elsewhere.example: not in "
          "allowed_hosts");
  }
  r.url = "http://ehr.example/token";  // listed, but a credential over plain http
  CHECK_THROWS_WITH(call_endpoint(client, r),
                    "token endpoint http://ehr.example/token: the URL is plain http (a token goes "
                    "over https only, or to a loopback host listed in allowed_hosts)");
}

}  // namespace
}  // namespace fbr::server::download
