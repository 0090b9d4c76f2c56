#pragma once
// An admin answer before it becomes bytes: the status, the body, its type and the few headers
// that vary (Set-Cookie, Allow). The security headers every answer carries are added where it
// is written (connection.cpp), so no route can forget them.
#include <boost/beast/http/status.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fbr::server::admin {

namespace http = boost::beast::http;

struct AdminReply {
  http::status status = http::status::ok;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  ///< Set-Cookie, Allow, Retry-After
  bool page = false;  ///< the console page or an asset: cacheable, with the page's CSP
};

/// {"error": message} with the status.
AdminReply json_error(http::status status, std::string_view message);
/// 200 with a JSON body.
AdminReply json_ok(std::string body);
/// 204, no body.
AdminReply no_content();
/// 405 with Allow.
AdminReply method_not_allowed(std::string_view allow);
/// 503 when the journal could not answer (its message in "detail": no secret comes from there).
AdminReply journal_unavailable(std::string_view why);
/// A ConsoleStore's error: one that names a request parameter ("cursor: ...", "since: ...") is
/// the client's (400); any other is the journal's (503).
AdminReply store_error(std::string_view error);

}  // namespace fbr::server::admin
