#include "server/http/router.hpp"

#include <algorithm>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <chrono>
#include <memory>

#include "core/text.hpp"
#include "core/when.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {
namespace asio = boost::asio;
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// Awaits the journal's commit without blocking the io_context: the writer thread posts the
/// result back to the session's executor.
template <class CompletionToken>
auto async_commit(Journal& journal, CommitRequest request, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(CommitResult)>(
      [&journal](auto handler, CommitRequest request) {
        auto executor = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        journal.commit(std::move(request), [shared, executor](CommitResult result) {
          asio::post(executor, [shared, result = std::move(result)]() mutable {
            (*shared)(std::move(result));
          });
        });
      },
      token, std::move(request));
}

constexpr std::string_view kNoTokenBodyTooLarge =
    "no token and a body over limits.max_unauthenticated_body_bytes";

Reply json_ok(std::string body) {
  Reply reply;
  reply.body = std::move(body);
  return reply;
}

}  // namespace

std::string header_token(const RequestHeader& request) {
  if (auto it = request.find("verification-token"); it != request.end()) {
    return std::string(core::trim_blanks(it->value()));
  }
  if (auto it = request.find(http::field::authorization); it != request.end()) {
    std::string_view value = core::trim_blanks(it->value());
    if (value.size() > 7 && lower(value.substr(0, 7)) == "bearer ") {
      return std::string(core::trim_blanks(value.substr(7)));
    }
  }
  return {};
}

bool is_json_content_type(std::string_view content_type) {
  std::string media = lower(core::trim_blanks(content_type.substr(0, content_type.find(';'))));
  if (media.empty()) return true;
  return media == "application/json" || media == "application/fhir+json" ||
         (media.size() > 5 && media.ends_with("+json"));
}

bool token_valid(std::string_view token, const std::vector<std::string>& tokens) {
  if (token.empty()) return false;
  // Compare against every configured token without stopping early: timing tells nothing.
  bool valid = false;
  for (const auto& t : tokens)
    valid |= core::constant_time_equal(token, t);
  return valid;
}

Admission Router::admit(const RequestHeader& header, const BodyFraming& framing,
                        const RequestInfo& info) {
  Admission admission = server::admit(header, framing, *config_.get(), path_);
  if (admission.early && admission.early->status == http::status::unauthorized) {
    unauthorized(
        admission.over_limit == OverLimit::kUnauthorized ? kNoTokenBodyTooLarge : "wrong token",
        info);
  }
  return admission;
}

Reply Router::over_limit(const Admission& admission, const RequestInfo& info) {
  if (admission.over_limit == OverLimit::kUnauthorized) unauthorized(kNoTokenBodyTooLarge, info);
  return admission.over_limit_reply();
}

void Router::unauthorized(std::string_view reason, const RequestInfo& info) {
  metrics_.event(EventResult::kUnauthorized);
  log_.warn("unauthorized", log_.fields()
                                .add("reason", reason)
                                .add("remote", info.remote_addr)
                                .add("request_id", info.request_id));
}

asio::awaitable<Reply> Router::handle(Request& request, const RequestInfo& info) {
  auto url = boost::urls::parse_origin_form(request.target());
  if (!url) co_return error_reply(http::status::bad_request, "bad request target");
  const std::string path = url->path();
  const bool get_or_head =
      request.method() == http::verb::get || request.method() == http::verb::head;

  if (path == "/healthz" && get_or_head) {
    co_return json_ok(R"({"status":"ok"})");
  }
  if (path == "/readyz" && get_or_head) {
    if (ready()) co_return json_ok(R"({"status":"ready"})");
    co_return unavailable_reply("journal is not writable");
  }
  if (path == "/metrics" && get_or_head) {
    Reply reply;
    reply.body = metrics_.render();
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    co_return reply;
  }
  if (path != path_) co_return error_reply(http::status::not_found, "not found");

  const auto config = config_.get();  // one snapshot for the whole request
  if (request.method() == http::verb::post) co_return co_await post_event(request, info, *config);
  if (get_or_head && url->params().contains("challenge")) {
    co_return get_challenge(request, url->params(), *config);
  }
  Reply reply = error_reply(http::status::method_not_allowed, "method not allowed",
                            "POST events here; GET only with ?challenge= (verification)");
  reply.allow = "POST, GET";
  co_return reply;
}

Reply Router::get_challenge(const Request& request, boost::urls::params_view params,
                            const config::Config& config) {
  std::string challenge = (*params.find("challenge")).value;
  std::string token = header_token(request);
  if (token.empty()) {
    if (auto it = params.find("verification-token"); it != params.end()) token = (*it).value;
  }
  if (!token_valid(token, config.verification_tokens)) {
    metrics_.event(EventResult::kUnauthorized);
    return unauthorized_reply();
  }
  return challenge_reply(challenge);
}

asio::awaitable<Reply> Router::post_event(Request& request, const RequestInfo& info,
                                          const config::Config& config) {
  const std::string& body = request.body();
  // Authenticate before parsing when the token came in a header (Redox always sends it there):
  // a wrong token costs no parse. Only a body without a header token may be a challenge that
  // carries its token inside.
  std::string token = header_token(request);
  std::optional<core::Challenge> challenge;
  if (token.empty()) {
    challenge = core::parse_challenge(body);
    if (challenge && challenge->token) token = *challenge->token;
  }
  if (!token_valid(token, config.verification_tokens)) {
    unauthorized(token.empty() ? "no token" : "wrong token", info);
    co_return unauthorized_reply();
  }
  // An event is parsed once; only a body that is not a valid event can be a challenge (a
  // challenge has no Meta), so the common case costs one parse.
  core::ParseResult parsed;
  if (!challenge) {
    parsed = core::parse_event(body);
    if (!parsed.ok()) challenge = core::parse_challenge(body);
  }
  if (challenge) {
    log_.info("verification_challenge", log_.fields().add("request_id", info.request_id));
    co_return challenge_reply(challenge->challenge);
  }
  if (!is_json_content_type(request[http::field::content_type])) {
    co_return error_reply(http::status::unsupported_media_type, "unsupported media type",
                          "send application/json or application/fhir+json");
  }

  Receipt receipt{utc_now_iso(), {}, info.remote_addr, info.request_id};

  if (!parsed.ok()) {
    auto fields =
        log_.fields()
            .add("errors", static_cast<std::int64_t>(parsed.errors.size()))
            .add("first_error", parsed.errors.front().path + ": " + parsed.errors.front().message)
            .add("request_id", info.request_id);
    if (config.invalid_payloads == config::InvalidPayloads::kReject) {
      metrics_.event(EventResult::kInvalid);
      log_.warn("invalid_payload", fields);
      co_return invalid_payload_reply(parsed.errors);
    }
    // Quarantine: keep the body and its errors durably, answer 200 so Redox's queue moves on.
    receipt.attempt_id = new_uuid();
    CommitRequest commit;
    commit.quarantine = true;
    commit.body = std::move(request.body());
    commit.errors_json = diagnostics_json(parsed.errors);
    commit.receipt = std::move(receipt);
    CommitResult result = co_await async_commit(journal_, std::move(commit), asio::use_awaitable);
    if (!result.ok) {
      metrics_.event(EventResult::kUnavailable);
      log_.error("quarantine_failed",
                 log_.fields().add("error", result.error).add("request_id", info.request_id));
      co_return unavailable_reply(result.error);
    }
    metrics_.event(EventResult::kQuarantined);
    log_.warn("quarantined", fields);
    co_return quarantined_reply(info.request_id, parsed.errors);
  }

  const core::Event& event = *parsed.event;
  const std::string log_id = event.log_id().empty() ? event.key : event.log_id();
  receipt.attempt_id = event.attempt_id().empty() ? new_uuid() : event.attempt_id();
  const std::string attempt_id = receipt.attempt_id;
  const auto started = std::chrono::steady_clock::now();
  CommitRequest commit;
  commit.key = event.key;
  commit.log_id = event.log_id();
  commit.status = event.status;
  commit.test = event.meta.test;
  commit.output_count = static_cast<std::int64_t>(event.output.size());
  commit.body = std::move(request.body());
  commit.receipt = std::move(receipt);
  for (const auto& handler : config.handlers) {
    if (core::matches(handler.when, event)) commit.handlers.push_back(handler.name);
  }
  const auto handlers = static_cast<std::int64_t>(commit.handlers.size());
  CommitResult result = co_await async_commit(journal_, std::move(commit), asio::use_awaitable);
  const double commit_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  metrics_.commit(commit_ms / 1000.0);
  if (!result.ok) {
    metrics_.event(EventResult::kUnavailable);
    log_.error("event_not_committed", log_.fields()
                                          .add("log_id", log_id)
                                          .add("attempt_id", attempt_id)
                                          .add("error", result.error)
                                          .add("request_id", info.request_id));
    co_return unavailable_reply(result.error);
  }
  auto fields = log_.fields()
                    .add("log_id", log_id)
                    .add("attempt_id", attempt_id)
                    .add("status", event.status)
                    .add("outputs", static_cast<std::int64_t>(event.output.size()))
                    .add("duplicate", result.duplicate)
                    .add("handlers", result.duplicate ? std::int64_t{0} : handlers)
                    .add("warnings", static_cast<std::int64_t>(parsed.warnings.size()))
                    .add("commit_ms", commit_ms)
                    .add("request_id", info.request_id);
  for (const auto& w : parsed.warnings) {
    log_.warn("event_warning", log_.fields()
                                   .add("log_id", log_id)
                                   .add("attempt_id", attempt_id)
                                   .add("path", w.path)
                                   .add("message", w.message));
  }
  metrics_.event(result.duplicate ? EventResult::kDuplicate : EventResult::kAccepted);
  log_.info("event", fields);
  co_return accepted_reply(log_id, result.duplicate, parsed.warnings);
}

}  // namespace fbr::server
