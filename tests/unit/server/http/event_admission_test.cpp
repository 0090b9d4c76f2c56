// The body-time admission step (admit_event, server/http/admission.hpp), without a socket: each
// outcome of a POST to the webhook read whole — 401, challenge, 415, 400, quarantine, accepted
// with the handlers whose `when` matched.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "server/http/admission.hpp"

using namespace fbr;
using namespace fbr::server;

namespace {

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(FBR_FIXTURES) + "/events/" + name, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

config::Handler handler(std::string name, core::WhenFilter when) {
  config::Handler h;
  h.name = std::move(name);
  h.type = "file";
  h.when = std::move(when);
  return h;
}

config::Config webhook_config() {
  config::Config c;
  c.verification_tokens = {"good", "change-me"};
  core::WhenFilter complete, in_progress, patients, production;
  complete.status = {200};
  in_progress.status = {202};
  patients.resource_types = {"Patient"};
  production.test = false;
  c.handlers.push_back(handler("all", {}));
  c.handlers.push_back(handler("complete", complete));
  c.handlers.push_back(handler("in-progress", in_progress));
  c.handlers.push_back(handler("patients", patients));
  c.handlers.push_back(handler("production", production));
  return c;
}

RequestHeader post(std::string token = "good", std::string content_type = "application/json") {
  RequestHeader h;
  h.method(http::verb::post);
  h.target("/webhook");
  if (!token.empty()) h.set("verification-token", token);
  if (!content_type.empty()) h.set(http::field::content_type, content_type);
  return h;
}

const Receipt kReceipt{"2026-12-02T00:00:00.000Z", "generated-attempt", "127.0.0.1:9", "request-1"};

EventAdmission decide(const RequestHeader& header, std::string body,
                      const config::Config& config = webhook_config()) {
  return admit_event(header, std::move(body), config, kReceipt);
}

}  // namespace

TEST_CASE("event admission: no token or a wrong one is 401, whatever the body") {
  for (const std::string& body : {fixture("complete.json"), fixture("invalid-several-errors.json"),
                                  std::string("not json")}) {
    const auto none = decide(post(""), body);
    CHECK(none.outcome == EventOutcome::kUnauthorized);
    CHECK(none.reply.status == http::status::unauthorized);
    CHECK(none.reason == "no token");
    CHECK_FALSE(none.needs_commit());
    const auto wrong = decide(post("bad"), body);
    CHECK(wrong.outcome == EventOutcome::kUnauthorized);
    CHECK(wrong.reply.status == http::status::unauthorized);
    CHECK(wrong.reason == "wrong token");
  }
  // A challenge body with a wrong token inside, and no header token.
  const auto challenge = decide(post(""), R"({"verification-token":"bad","challenge":"c"})");
  CHECK(challenge.outcome == EventOutcome::kUnauthorized);
  CHECK(challenge.reason == "wrong token");
}

TEST_CASE("event admission: a challenge is echoed with its token in the body or in the header") {
  const auto in_body = decide(post(""), fixture("verification-challenge.json"));
  CHECK(in_body.outcome == EventOutcome::kChallenge);
  CHECK(in_body.reply.status == http::status::ok);
  CHECK(in_body.reply.body == "2e73f864-a0e9-4764-a7d5-91fe5836db22");
  CHECK(in_body.reply.content_type == "text/plain");
  CHECK_FALSE(in_body.needs_commit());
  const auto in_header = decide(post("good"), R"({"challenge":"C-1"})");
  CHECK(in_header.outcome == EventOutcome::kChallenge);
  CHECK(in_header.reply.body == "C-1");
}

TEST_CASE("event admission: a Content-Type that is not JSON is 415, checked after the token") {
  const auto text = decide(post("good", "text/plain"), fixture("complete.json"));
  CHECK(text.outcome == EventOutcome::kUnsupportedMediaType);
  CHECK(text.reply.status == http::status::unsupported_media_type);
  CHECK_FALSE(text.needs_commit());
  CHECK(decide(post("bad", "text/plain"), fixture("complete.json")).outcome ==
        EventOutcome::kUnauthorized);
  for (const char* json : {"", "application/json", "application/fhir+json; charset=utf-8"}) {
    CAPTURE(json);
    CHECK(decide(post("good", json), fixture("complete.json")).outcome == EventOutcome::kAccepted);
  }
}

TEST_CASE("event admission: an invalid body is 400 under invalid_payloads reject") {
  auto config = webhook_config();
  config.invalid_payloads = config::InvalidPayloads::kReject;
  const auto a = decide(post(), fixture("invalid-several-errors.json"), config);
  CHECK(a.outcome == EventOutcome::kRejected);
  CHECK(a.reply.status == http::status::bad_request);
  CHECK(a.reply.body.find("invalid payload") != std::string::npos);
  CHECK(a.parsed.errors.size() > 1);
  CHECK_FALSE(a.needs_commit());
  CHECK(decide(post(), "not json", config).reply.status == http::status::bad_request);
}

TEST_CASE("event admission: an invalid body is committed to quarantine under quarantine") {
  auto config = webhook_config();
  config.invalid_payloads = config::InvalidPayloads::kQuarantine;
  const std::string body = fixture("invalid-several-errors.json");
  const auto a = decide(post(), body, config);
  CHECK(a.outcome == EventOutcome::kQuarantined);
  REQUIRE(a.needs_commit());
  CHECK(a.commit.quarantine);
  CHECK(a.commit.body == body);
  CHECK(a.commit.errors_json == diagnostics_json(a.parsed.errors));
  CHECK(a.commit.handlers.empty());  // nothing runs for a body that is not an event
  CHECK(a.commit.receipt.attempt_id == "generated-attempt");
  CHECK(a.commit.receipt.request_id == "request-1");
  CHECK(a.commit.receipt.remote_addr == "127.0.0.1:9");
}

TEST_CASE("event admission: a valid event is accepted with the handlers whose when matched") {
  const std::string complete = fixture("complete.json");
  const auto a = decide(post(), complete);
  CHECK(a.outcome == EventOutcome::kAccepted);
  REQUIRE(a.needs_commit());
  CHECK_FALSE(a.commit.quarantine);
  CHECK(a.commit.body == complete);
  CHECK(a.commit.log_id == "d9f5d293-7110-461e-a875-3beb089e79f3");
  CHECK(a.commit.key == a.parsed.event->key);
  CHECK(a.commit.status == 200);
  CHECK(a.commit.output_count == 2);
  CHECK(a.commit.test == std::optional<bool>(true));
  // The event's own AttemptID, not the generated one.
  CHECK(a.commit.receipt.attempt_id == "925d1617-2fe0-468c-a14c-f8c04b572c54");
  CHECK(a.commit.receipt.received_at == kReceipt.received_at);
  CHECK(a.commit.handlers == std::vector<std::string>{"all", "complete", "patients"});

  const auto progress = decide(post(), fixture("in-progress.json"));
  CHECK(progress.outcome == EventOutcome::kAccepted);
  CHECK(progress.commit.status == 202);
  CHECK(progress.commit.handlers == std::vector<std::string>{"all", "in-progress"});

  // A Bearer token admits the same, and no handler at all is a valid outcome.
  RequestHeader bearer = post("");
  bearer.set(http::field::authorization, "Bearer good");
  config::Config none = webhook_config();
  none.handlers.clear();
  const auto unhandled = admit_event(bearer, complete, none, kReceipt);
  CHECK(unhandled.outcome == EventOutcome::kAccepted);
  CHECK(unhandled.commit.handlers.empty());
}
