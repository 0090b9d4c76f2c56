#include "core/url.hpp"

#include <algorithm>

namespace fbr::core {

std::string redacted_url(std::string_view url) {
  url = url.substr(0, std::min(url.find_first_of("?#"), url.size()));
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const std::size_t authority = scheme + 3;
  const std::size_t path = std::min(url.find('/', authority), url.size());
  const std::size_t at = url.substr(authority, path - authority).rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  const std::string_view userinfo = url.substr(authority, at);
  std::string out(url.substr(0, authority));
  if (const std::size_t colon = userinfo.find(':'); colon != std::string_view::npos) {
    out += userinfo.substr(0, colon + 1);
  }
  out += "<redacted>";
  out += url.substr(authority + at);
  return out;
}

std::string host_port(std::string_view host, unsigned port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out.append("[").append(host).append("]");
  } else {
    out.append(host);
  }
  return out.append(":").append(std::to_string(port));
}

}  // namespace fbr::core
