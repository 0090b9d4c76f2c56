// GCC 12 takes the coroutine frames' sized operator delete for a mismatch once a third coroutine
// (admit, which may wait for the JWKS) shares this file and is inlined (a false positive, as in
// tests/unit/server/http/request_reader_test.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
#include "server/http/router.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <memory>

#include "core/event.hpp"
#include "core/text.hpp"
#include "server/http/oauth_token.hpp"
#include "server/journal/console.hpp"
#include "server/support/activity.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {
namespace asio = boost::asio;
namespace {

/// Awaits the journal's commit without blocking the io_context: the writer thread posts the
/// result back to the session's executor.
template <class CompletionToken>
auto async_commit(Journal& journal, CommitRequest request, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(CommitResult)>(
      [&journal](auto handler, CommitRequest request) {
        auto executor = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        // The answer comes back through the session's executor; a journal with nothing else to
        // do may run the commit on it too (after what the executor has queued already).
        journal.commit_or_defer(
            std::move(request),
            [shared, executor](CommitResult result) {
              asio::post(executor, [shared, result = std::move(result)]() mutable {
                (*shared)(std::move(result));
              });
            },
            [executor](std::function<void()> run) { asio::post(executor, std::move(run)); });
      },
      token, std::move(request));
}

constexpr std::string_view kNoTokenBodyTooLarge =
    "no token and a body over limits.max_unauthenticated_body_bytes";

/// The log fields of a body that is not a valid event (rejected or quarantined).
Fields invalid_fields(const Logger& log, const core::ParseResult& parsed, const RequestInfo& info) {
  return log.fields()
      .add("errors", static_cast<std::int64_t>(parsed.errors.size()))
      .add("first_error", parsed.errors.front().path + ": " + parsed.errors.front().message)
      .add("request_id", info.request_id);
}

Reply json_ok(std::string body) {
  Reply reply;
  reply.body = std::move(body);
  return reply;
}

/// What the console's stream shows of a commit about to be made: an events-table row (every
/// matched handler pending) or a quarantine item (its id is the journal's, not known yet).
std::string stream_item(const CommitRequest& commit) {
  if (commit.quarantine) {
    QuarantineRow row;
    row.received_at = commit.receipt.received_at;
    row.attempt_id = commit.receipt.attempt_id;
    row.remote_addr = commit.receipt.remote_addr;
    row.request_id = commit.receipt.request_id;
    row.errors_json = commit.errors_json;
    row.bytes = commit.body.size();
    return to_json(row, false);
  }
  EventSummary event;
  event.key = commit.key;
  event.log_id = commit.log_id;
  event.received_at = commit.receipt.received_at;
  event.status = commit.status;
  event.test = commit.test;
  event.output_count = commit.output_count;
  event.attempts = 1;
  for (const auto& handler : commit.handlers)
    event.deliveries.push_back({handler, "pending", 0});
  return to_json(event);
}

}  // namespace

Router::Router(const LiveConfig& config, Journal& journal, Metrics& metrics, const Logger& log,
               const LiveAuth* auth)
    : config_(config),
      own_auth_(auth ? nullptr
                     : std::make_unique<LiveAuth>(std::make_shared<const Authenticator>(
                           config.get()->verification_tokens))),
      auth_(auth ? *auth : *own_auth_),
      path_(config.get()->path),
      admin_(config.get()->admin.enabled()),
      journal_(journal),
      metrics_(metrics),
      log_(log) {}

asio::awaitable<Admission> Router::admit(const RequestHeader& header, const BodyFraming& framing,
                                         const RequestInfo& info) {
  const auto config = config_.get();
  const auto auth = auth_.get();  // the same one across the wait
  Admission admission = server::admit(header, framing, *config, *auth, path_, unix_now());
  if (admission.await_keys && auth->jwks() != nullptr) {
    // Poll the key source's generation on a timer: the io thread goes on serving meanwhile.
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + kKeyWait;
    while (auth->jwks()->generation() <= *admission.await_keys &&
           std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(std::chrono::milliseconds(20));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    admission = server::admit(header, framing, *config, *auth, path_, unix_now(), false);
  }
  if (admission.early && admission.early->status == http::status::unauthorized) {
    unauthorized(
        admission.over_limit == OverLimit::kUnauthorized ? kNoTokenBodyTooLarge : admission.reason,
        info);
  }
  co_return admission;
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
  // With an admin listener, the details (why not ready, the metrics) are there only.
  if (path == "/readyz" && get_or_head) {
    if (ready()) co_return json_ok(R"({"status":"ready"})");
    if (!admin_) co_return unavailable_reply("journal is not writable");
    Reply reply = error_reply(http::status::service_unavailable, "not ready");
    reply.retry_after = "5";
    co_return reply;
  }
  if (path == "/metrics" && get_or_head && !admin_) {
    Reply reply;
    reply.body = metrics_.render();
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    co_return reply;
  }
  if (path == kJwksPath && get_or_head) co_return published_keys(*auth_.get());
  if (path == kTokenPath && auth_.get()->token_endpoint() != nullptr) {
    co_return token_request(request, info);
  }
  if (path != path_) co_return error_reply(http::status::not_found, "not found");

  const auto config = config_.get();  // one snapshot for the whole request
  if (request.method() == http::verb::post) co_return co_await post_event(request, info, *config);
  if (get_or_head && url->params().contains("challenge")) {
    co_return get_challenge(request, url->params(), *auth_.get());
  }
  Reply reply = error_reply(http::status::method_not_allowed, "method not allowed",
                            "POST events here; GET only with ?challenge= (verification)");
  reply.allow = "POST, GET";
  co_return reply;
}

Reply Router::published_keys(const Authenticator& auth) {
  if (auth.published_jwks().empty()) return error_reply(http::status::not_found, "not found");
  Reply reply = json_ok(auth.published_jwks());
  reply.content_type = "application/jwk-set+json";
  reply.cache_control = "max-age=300";
  return reply;
}

Reply Router::token_request(const Request& request, const RequestInfo& info) {
  const auto snapshot = auth_.get();
  const Authenticator& auth = *snapshot;
  if (auth.token_endpoint() == nullptr) return error_reply(http::status::not_found, "not found");
  TokenAnswer answer =
      answer_token_request(request, request.body(), *auth.token_endpoint(), unix_now(), new_uuid());
  if (answer.error.empty()) {
    log_.info("token_issued",
              log_.fields()
                  .add("client_id", core::printable(answer.client_id))
                  .add("expires_in", static_cast<std::int64_t>(auth.token_endpoint()->ttl_s))
                  .add("remote", info.remote_addr)
                  .add("request_id", info.request_id));
  } else {
    log_.warn("token_refused", log_.fields()
                                   .add("error", answer.error)
                                   .add("remote", info.remote_addr)
                                   .add("request_id", info.request_id));
  }
  return std::move(answer.reply);
}

Reply Router::get_challenge(const Request& request, boost::urls::params_view params,
                            const Authenticator& auth) {
  std::string challenge = (*params.find("challenge")).value;
  std::string token = header_token(request);
  if (token.empty()) {
    if (auto it = params.find("verification-token"); it != params.end()) token = (*it).value;
  }
  if (!auth.shared_token_valid(token)) {
    metrics_.event(EventResult::kUnauthorized);
    return unauthorized_reply();
  }
  return challenge_reply(challenge);
}

asio::awaitable<Reply> Router::post_event(Request& request, const RequestInfo& info,
                                          const config::Config& config) {
  // No attempt ID yet: most events carry Redox's, so one is generated only for those that do not
  // (and for a quarantined body), after admission, not for every request.
  EventAdmission admission =
      admit_event(request, std::move(request.body()), config, *auth_.get(), unix_now(),
                  Receipt{utc_now_iso(), {}, info.remote_addr, info.request_id});
  if (!admission.needs_commit()) co_return answered(admission, info);
  if (admission.commit.receipt.attempt_id.empty())
    admission.commit.receipt.attempt_id = new_uuid_v7();
  // What the log needs of the commit once it has moved into the journal.
  Committed committed{admission.commit.receipt.attempt_id,
                      static_cast<std::int64_t>(admission.commit.handlers.size()), 0,
                      activity().listening() ? stream_item(admission.commit) : std::string()};
  const auto started = std::chrono::steady_clock::now();
  CommitResult result =
      co_await async_commit(journal_, std::move(admission.commit), asio::use_awaitable);
  committed.commit_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  co_return answer_commit(admission, committed, result, info);
}

Reply Router::answered(EventAdmission& admission, const RequestInfo& info) {
  if (admission.outcome == EventOutcome::kUnauthorized) {
    unauthorized(admission.reason, info);
  } else if (admission.outcome == EventOutcome::kChallenge) {
    log_.info("verification_challenge", log_.fields().add("request_id", info.request_id));
  } else if (admission.outcome == EventOutcome::kRejected) {
    metrics_.event(EventResult::kInvalid);
    log_.warn("invalid_payload", invalid_fields(log_, admission.parsed, info));
  }
  return std::move(admission.reply);
}

void Router::tell_console(const Committed& committed, bool quarantine) {
  if (!quarantine) activity().count_event(unix_ms_now());
  // A stream opened during the commit sees the event in the table when it loads; one still open
  // is told now.
  if (!committed.stream_item.empty() && activity().listening()) {
    activity().publish(quarantine ? "quarantine" : "event", committed.stream_item);
  }
}

Reply Router::answer_commit(const EventAdmission& admission, const Committed& committed,
                            const CommitResult& result, const RequestInfo& info) {
  const core::ParseResult& parsed = admission.parsed;
  if (admission.outcome == EventOutcome::kQuarantined) {
    if (!result.ok) {
      metrics_.event(EventResult::kUnavailable);
      log_.error("quarantine_failed",
                 log_.fields().add("error", result.error).add("request_id", info.request_id));
      return unavailable_reply(result.error);
    }
    metrics_.event(EventResult::kQuarantined);
    log_.warn("quarantined", invalid_fields(log_, parsed, info));
    tell_console(committed, true);
    return quarantined_reply(info.request_id, parsed.errors);
  }

  const core::Event& event = *parsed.event;
  const std::string_view log_id = core::log_id_or_key(event.log_id(), event.key);
  const std::string& attempt_id = committed.attempt_id;
  metrics_.commit(committed.commit_ms / 1000.0);
  if (!result.ok) {
    metrics_.event(EventResult::kUnavailable);
    log_.error("event_not_committed", log_.fields()
                                          .add("log_id", log_id)
                                          .add("attempt_id", attempt_id)
                                          .add("error", result.error)
                                          .add("request_id", info.request_id));
    return unavailable_reply(result.error);
  }
  auto fields = log_.fields()
                    .add("log_id", log_id)
                    .add("attempt_id", attempt_id)
                    .add("status", event.status)
                    .add("outputs", static_cast<std::int64_t>(event.output.size()))
                    .add("duplicate", result.duplicate)
                    .add("handlers", result.duplicate ? std::int64_t{0} : committed.handlers)
                    .add("warnings", static_cast<std::int64_t>(parsed.warnings.size()))
                    .add("commit_ms", committed.commit_ms)
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
  if (!result.duplicate) tell_console(committed, false);
  return accepted_reply(log_id, result.duplicate, parsed.warnings);
}

}  // namespace fbr::server
