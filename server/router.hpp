#pragma once
// Maps one HTTP request to its Reply: routing, authentication, verification challenges, and the
// ingest path (parse → journal commit → answer). The session owns the socket; this owns the rules.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/url/params_view.hpp>
#include <string>

#include "config/config.hpp"
#include "server/journal.hpp"
#include "server/log.hpp"
#include "server/reply.hpp"

namespace fbr::server {

using Request = http::request<http::string_body>;

/// What the session knows about a request besides the message itself.
struct RequestInfo {
  std::string remote_addr;
  std::string request_id;
};

class Router {
 public:
  Router(const config::Config& config, Journal& journal, const Logger& log)
      : config_(config), journal_(journal), log_(log) {}

  /// Answers a request whose body has been read in full. Never throws.
  boost::asio::awaitable<Reply> handle(Request& request, const RequestInfo& info);

  /// Readiness: the journal is writable.
  [[nodiscard]] bool ready() { return journal_.writable(); }

 private:
  boost::asio::awaitable<Reply> post_event(Request& request, const RequestInfo& info);
  Reply get_challenge(const Request& request, boost::urls::params_view params);
  [[nodiscard]] bool token_valid(std::string_view token) const;

  const config::Config& config_;
  Journal& journal_;
  const Logger& log_;
};

/// The token a request carries in `verification-token` or `Authorization: Bearer`, or empty.
std::string header_token(const Request& request);

/// True for no Content-Type, application/json, application/fhir+json and any */*+json.
bool is_json_content_type(std::string_view content_type);

}  // namespace fbr::server
