#pragma once
// Maps one HTTP request, read whole, to its Reply: routing (/healthz, /readyz, /metrics, the
// webhook), GET challenges, and the ingest path: admit_event() (admission.hpp) decides, the one
// await on the journal's commit, then metrics, logs and the console's live stream. With an admin
// listener (admin.listen), /metrics and the detailed readiness are there: here /metrics is 404
// and /readyz is bare. The session owns the socket.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/url/params_view.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "server/http/admission.hpp"
#include "server/http/auth.hpp"
#include "server/http/reply.hpp"
#include "server/http/request_body.hpp"
#include "server/journal/journal.hpp"
#include "server/support/live_config.hpp"
#include "server/support/log.hpp"
#include "server/support/metrics.hpp"

namespace fbr::server {

using Request = http::request<RequestBody>;

/// The longest a request waits for the JWKS to be fetched again (an unknown kid).
inline constexpr std::chrono::milliseconds kKeyWait{3000};

/// What the session knows about a request besides the message itself.
struct RequestInfo {
  std::string remote_addr;
  std::string request_id;
};

class Router {
 public:
  /// `auth`: the live Authenticator; null: one of the config's shared tokens only (tests).
  Router(const LiveConfig& config, Journal& journal, Metrics& metrics, const Logger& log,
         const LiveAuth* auth = nullptr);

  /// The header-time decision (admit() with the live Authenticator and the webhook path); a 401
  /// is counted and logged here. A JWT whose kid the JWKS lacks waits here (at most
  /// kKeyWait, on a timer: the thread serves others) for one refetch of the keys.
  boost::asio::awaitable<Admission> admit(const RequestHeader& header, const BodyFraming& framing,
                                          const RequestInfo& info);
  /// The answer to a body that grew past admission.body_limit (a 401 counted and logged).
  Reply over_limit(const Admission& admission, const RequestInfo& info);
  /// Counts and logs an unauthenticated request (`reason`: no token, wrong token, ...).
  void unauthorized(std::string_view reason, const RequestInfo& info);

  /// Answers a request whose body has been read in full. Never throws.
  boost::asio::awaitable<Reply> handle(Request& request, const RequestInfo& info);

  /// Readiness: the journal is writable.
  [[nodiscard]] bool ready() { return journal_.writable(); }

 private:
  boost::asio::awaitable<Reply> post_event(Request& request, const RequestInfo& info,
                                           const config::Config& config);
  /// Counts and logs an event admission answered without a commit, and returns its reply.
  Reply answered(EventAdmission& admission, const RequestInfo& info);
  /// What the answer to a commit needs of it once the request has moved into the journal.
  struct Committed {
    std::string attempt_id;
    std::int64_t handlers = 0;  ///< matched handlers (a pending delivery each, if new)
    double commit_ms = 0;
    /// The console's stream item (an events-table row or a quarantine item), built before the
    /// request moved into the journal, and only when a stream is open.
    std::string stream_item;
  };
  /// Counts a new event for the console and publishes its stream item, if any.
  static void tell_console(const Committed& committed, bool quarantine);
  /// Counts and logs a commit's outcome, and returns the answer to it.
  Reply answer_commit(const EventAdmission& admission, const Committed& committed,
                      const CommitResult& result, const RequestInfo& info);
  Reply get_challenge(const Request& request, boost::urls::params_view params,
                      const Authenticator& auth);
  /// POST /oauth/token (oauth_server on), logged without the token or the secret.
  Reply token_request(const Request& request, const RequestInfo& info);
  /// GET /.well-known/jwks.json: our public keys, 404 when there are none.
  static Reply published_keys(const Authenticator& auth);

  const LiveConfig& config_;
  std::unique_ptr<LiveAuth> own_auth_;  // when constructed without one
  const LiveAuth& auth_;
  const std::string path_;  // fixed at start: a reload does not move the endpoint
  const bool admin_;        // an admin listener (admin.listen, also fixed at start)
  Journal& journal_;
  Metrics& metrics_;
  const Logger& log_;
};

}  // namespace fbr::server
