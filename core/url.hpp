#pragma once
// The one way a URL is shown outside the request it came in: in logs, error messages, the files
// the handlers write and the printed configuration. Presigned storage URLs carry credentials in
// their query string, and user info can hold a password or a bare token.
#include <string>
#include <string_view>

namespace fbr::core {

/// `url` without its query and fragment, the password of its user info (or the whole user info,
/// a bare token) replaced by "<redacted>": "https://u:pw@h/p?sig=x#f" → "https://u:<redacted>@h/p".
std::string redacted_url(std::string_view url);

/// "host:port", with the host in brackets when it is an IPv6 literal (has a ':'): "[::1]:8080".
std::string host_port(std::string_view host, unsigned port);

}  // namespace fbr::core
