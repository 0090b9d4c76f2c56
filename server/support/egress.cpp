#include "server/support/egress.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/text.hpp"
#include "server/support/curl.hpp"

namespace fbr::server::egress {
namespace {

bool in_v4(const std::uint8_t* a, std::uint32_t network, int bits) {
  const std::uint32_t value = (std::uint32_t{a[0]} << 24) | (std::uint32_t{a[1]} << 16) |
                              (std::uint32_t{a[2]} << 8) | std::uint32_t{a[3]};
  const std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
  return (value & mask) == (network & mask);
}

constexpr std::uint32_t v4(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

AddressKind classify_v4(const std::uint8_t* a) {
  if (in_v4(a, v4(255, 255, 255, 255), 32)) return AddressKind::kBroadcast;
  if (in_v4(a, v4(0, 0, 0, 0), 8)) return AddressKind::kUnspecified;
  if (in_v4(a, v4(127, 0, 0, 0), 8)) return AddressKind::kLoopback;
  if (in_v4(a, v4(10, 0, 0, 0), 8) || in_v4(a, v4(172, 16, 0, 0), 12) ||
      in_v4(a, v4(192, 168, 0, 0), 16)) {
    return AddressKind::kPrivate;
  }
  if (in_v4(a, v4(169, 254, 0, 0), 16)) return AddressKind::kLinkLocal;
  if (in_v4(a, v4(100, 64, 0, 0), 10)) return AddressKind::kShared;
  if (in_v4(a, v4(224, 0, 0, 0), 4)) return AddressKind::kMulticast;
  if (in_v4(a, v4(240, 0, 0, 0), 4) || in_v4(a, v4(192, 0, 0, 0), 24) ||
      in_v4(a, v4(192, 0, 2, 0), 24) || in_v4(a, v4(198, 18, 0, 0), 15) ||
      in_v4(a, v4(198, 51, 100, 0), 24) || in_v4(a, v4(203, 0, 113, 0), 24)) {
    return AddressKind::kReserved;
  }
  return AddressKind::kPublic;
}

/// The first `bytes` bytes of `a` equal `prefix`.
bool starts_with(const std::array<std::uint8_t, 16>& a,
                 std::initializer_list<std::uint8_t> prefix) {
  return std::equal(prefix.begin(), prefix.end(), a.begin());
}

bool all_zero(const std::uint8_t* a, std::size_t n) {
  return std::all_of(a, a + n, [](std::uint8_t b) { return b == 0; });
}

std::string_view env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string_view{} : std::string_view(value);
}

struct UrlCleanup {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlString {
  char* text = nullptr;
  ~CurlString() { curl_free(text); }
};

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  const auto address = parse_address(host);
  return address && classify(*address) == AddressKind::kLoopback;
}

constexpr std::string_view kAllowWith = " (allow with allowed_hosts or allow_private_addresses)";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Addresses

std::optional<Address> parse_address(std::string_view literal) {
  if (literal.size() >= 2 && literal.front() == '[' && literal.back() == ']') {
    literal = literal.substr(1, literal.size() - 2);
  }
  if (literal.empty() || literal.size() > 64) return std::nullopt;
  const std::string text(literal);
  Address out;
  if (text.find(':') != std::string::npos) {
    out.v6 = true;
    if (::inet_pton(AF_INET6, text.c_str(), out.bytes.data()) != 1) return std::nullopt;
    return out;
  }
  // inet_pton takes dotted-quad only ("127.1" and "0x7f.0.0.1" are names to it; libcurl
  // normalizes those forms in URLs, and the address check after DNS sees what they become).
  if (::inet_pton(AF_INET, text.c_str(), out.bytes.data()) != 1) return std::nullopt;
  return out;
}

std::optional<Address> address_of(const sockaddr* address, std::size_t length) {
  if (address == nullptr) return std::nullopt;
  Address out;
  if (address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    sockaddr_in in{};
    std::memcpy(&in, address, sizeof in);
    std::memcpy(out.bytes.data(), &in.sin_addr, 4);
    out.port = ntohs(in.sin_port);
    return out;
  }
  if (address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in{};
    std::memcpy(&in, address, sizeof in);
    out.v6 = true;
    std::memcpy(out.bytes.data(), &in.sin6_addr, 16);
    out.port = ntohs(in.sin6_port);
    return out;
  }
  return std::nullopt;
}

std::string address_text(const Address& address) {
  char text[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(address.v6 ? AF_INET6 : AF_INET, address.bytes.data(), text, sizeof text);
  return text;
}

AddressKind classify(const Address& address) {
  const auto& a = address.bytes;
  if (!address.v6) return classify_v4(a.data());
  // Forms that carry an IPv4 address: judged by it.
  const bool mapped = all_zero(a.data(), 10) && a[10] == 0xff && a[11] == 0xff;
  const bool compatible = all_zero(a.data(), 12) && !all_zero(a.data() + 12, 3);
  const bool nat64 = starts_with(a, {0x00, 0x64, 0xff, 0x9b}) && all_zero(a.data() + 4, 8);
  if (mapped || compatible || nat64) return classify_v4(a.data() + 12);
  if (starts_with(a, {0x20, 0x02})) return classify_v4(a.data() + 2);  // 6to4
  if (all_zero(a.data(), 15)) {
    return a[15] == 1   ? AddressKind::kLoopback
           : a[15] == 0 ? AddressKind::kUnspecified
                        : AddressKind::kReserved;
  }
  if (a[0] == 0xff) return AddressKind::kMulticast;
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return AddressKind::kLinkLocal;
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return AddressKind::kPrivate;  // site-local
  if ((a[0] & 0xfe) == 0xfc) return AddressKind::kUniqueLocal;
  if (starts_with(a, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01})) return AddressKind::kPrivate;
  if (starts_with(a, {0x20, 0x01, 0x0d, 0xb8}) ||
      (starts_with(a, {0x01, 0x00}) && all_zero(a.data() + 2, 6))) {
    return AddressKind::kReserved;  // documentation, discard
  }
  return AddressKind::kPublic;
}

std::string_view describe(AddressKind kind) {
  switch (kind) {
    case AddressKind::kPublic:
      return "public address";
    case AddressKind::kLoopback:
      return "loopback address";
    case AddressKind::kPrivate:
      return "private address";
    case AddressKind::kLinkLocal:
      return "link-local address";
    case AddressKind::kShared:
      return "shared (carrier-grade NAT) address";
    case AddressKind::kUniqueLocal:
      return "unique-local address";
    case AddressKind::kMulticast:
      return "multicast address";
    case AddressKind::kUnspecified:
      return "unspecified address";
    case AddressKind::kBroadcast:
      return "broadcast address";
    case AddressKind::kReserved:
      return "reserved address";
  }
  return "address";
}

// ---------------------------------------------------------------------------------------------
// Hosts and URLs

std::string normalize_host(std::string_view host) {
  if (auto address = parse_address(host)) return address_text(*address);
  std::string out = core::lower_ascii(host);
  while (!out.empty() && out.back() == '.')
    out.pop_back();
  return out;
}

bool host_matches(std::string_view pattern, std::string_view host) {
  const std::string h = normalize_host(host);
  if (pattern.starts_with("*.")) {
    const std::string suffix = "." + normalize_host(pattern.substr(2));
    return h.size() > suffix.size() && h.ends_with(suffix);
  }
  return !h.empty() && normalize_host(pattern) == h;
}

std::optional<Target> parse_target(std::string_view url, std::string& error) {
  std::unique_ptr<CURLU, UrlCleanup> u(curl_url());
  if (!u) {
    error = "cannot parse the URL (out of memory)";
    return std::nullopt;
  }
  const std::string text(url);
  if (const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0); rc != CURLUE_OK) {
    error = std::string("not a usable URL: ") + curl_url_strerror(rc);
    return std::nullopt;
  }
  CurlString scheme;
  CurlString host;
  CurlString port;
#ifdef CURLU_PUNYCODE
  constexpr unsigned kHostFlags = CURLU_PUNYCODE;  // names compared as they are looked up
#else
  constexpr unsigned kHostFlags = 0;
#endif
  if (curl_url_get(u.get(), CURLUPART_SCHEME, &scheme.text, 0) != CURLUE_OK ||
      curl_url_get(u.get(), CURLUPART_HOST, &host.text, kHostFlags) != CURLUE_OK ||
      curl_url_get(u.get(), CURLUPART_PORT, &port.text, CURLU_DEFAULT_PORT) != CURLUE_OK) {
    error = "not a usable URL: no host";
    return std::nullopt;
  }
  Target target{core::lower_ascii(scheme.text), normalize_host(host.text),
                static_cast<int>(std::strtol(port.text, nullptr, 10))};
  if (target.scheme != "http" && target.scheme != "https") {
    error = "not an http:// or https:// URL (scheme " + target.scheme + ")";
    return std::nullopt;
  }
  if (target.host.empty()) {
    error = "not a usable URL: no host";
    return std::nullopt;
  }
  return target;
}

// ---------------------------------------------------------------------------------------------
// Policy

Policy::Policy(const config::Egress& settings) : allow_private_(settings.allow_private_addresses) {
  for (const auto& pattern : settings.allowed_hosts) {
    allowed_.push_back(pattern.starts_with("*.") ? "*." + normalize_host(pattern.substr(2))
                                                 : normalize_host(pattern));
  }
  token_hosts_ = settings.token_hosts;
}

bool Policy::listed(std::string_view host) const {
  return std::any_of(allowed_.begin(), allowed_.end(),
                     [&](const std::string& pattern) { return host_matches(pattern, host); });
}

std::string Policy::check_host(const Target& target) const {
  if (!allowed_.empty() && !listed(target.host)) {
    return "refused host " + target.host + ": not in allowed_hosts";
  }
  if (const auto literal = parse_address(target.host)) return check_address(target, *literal);
  return "";
}

std::string Policy::check_address(const Target& target, const Address& address) const {
  const AddressKind kind = classify(address);
  if (kind == AddressKind::kPublic || allow_private_ || listed(target.host)) return "";
  std::string out = "refused " + address_text(address);
  if (address_text(address) != target.host) out += " for " + target.host;
  return out + ": " + std::string(describe(kind)) + std::string(kAllowWith);
}

std::vector<std::string> Policy::token_hosts(const std::optional<std::string>& request_url) const {
  if (token_hosts_) return *token_hosts_;
  if (!request_url) return {};
  std::string error;
  const auto target = parse_target(*request_url, error);
  if (!target) return {};
  return {target->host};
}

TokenDecision Policy::token_for(const Target& target,
                                const std::vector<std::string>& token_hosts) const {
  const bool host_ok = std::any_of(token_hosts.begin(), token_hosts.end(),
                                   [&](const auto& p) { return host_matches(p, target.host); });
  if (!host_ok) {
    return {false,
            target.host + " is not in token_hosts (default: the host of the event's request URL)"};
  }
  if (target.scheme == "https") return {true, {}};
  const bool named = std::any_of(allowed_.begin(), allowed_.end(), [&](const std::string& p) {
    return !p.starts_with("*.") && p == target.host;
  });
  if (is_loopback_host(target.host) && named) return {true, {}};
  return {false,
          "the URL is plain http (a token goes over https only, or to a loopback host "
          "listed in allowed_hosts)"};
}

// ---------------------------------------------------------------------------------------------
// Guard

std::vector<Address> proxy_addresses(std::string_view setting) {
  std::vector<Address> out;
  if (setting.empty()) return out;
  std::string url(setting);
  if (url.find("://") == std::string::npos) url = "http://" + url;
  std::unique_ptr<CURLU, UrlCleanup> u(curl_url());
  CurlString host;
  CurlString port;
  if (!u ||
      curl_url_set(u.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
      curl_url_get(u.get(), CURLUPART_HOST, &host.text, 0) != CURLUE_OK) {
    return out;
  }
  // libcurl's default proxy port.
  long number = 1080;
  if (curl_url_get(u.get(), CURLUPART_PORT, &port.text, 0) == CURLUE_OK) {
    number = std::strtol(port.text, nullptr, 10);
  }
  const std::string name = normalize_host(host.text);
  if (auto literal = parse_address(name)) {
    literal->port = static_cast<std::uint16_t>(number);
    out.push_back(*literal);
    return out;
  }
  // The operator's proxy name (configuration, not input from an event).
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(name.c_str(), nullptr, &hints, &found) != 0) return out;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (auto address = address_of(a->ai_addr, a->ai_addrlen)) {
      address->port = static_cast<std::uint16_t>(number);
      out.push_back(*address);
    }
  }
  ::freeaddrinfo(found);
  return out;
}

std::vector<Address> environment_proxies() {
  std::vector<Address> out;
  for (const char* name : {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}) {
    for (const Address& a : proxy_addresses(env(name)))
      out.push_back(a);
  }
  return out;
}

Guard::Guard(const Policy& policy, const std::vector<Address>& proxies)
    : policy_(policy), proxies_(proxies) {}

void Guard::install(CURL* curl) {
  allow_only_http(curl);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, &Guard::open_socket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, this);
}

void Guard::set_target(const Target& target, bool loopback_only) {
  target_ = target;
  loopback_only_ = loopback_only;
  refusal_.clear();
}

bool Guard::is_proxy(const Address& address) const {
  return std::find(proxies_.begin(), proxies_.end(), address) != proxies_.end();
}

curl_socket_t Guard::open_socket(void* self, curlsocktype purpose, curl_sockaddr* address) {
  auto* guard = static_cast<Guard*>(self);
  const auto where = address_of(&address->addr, address->addrlen);
  std::string refusal;
  if (purpose != CURLSOCKTYPE_IPCXN || !where) {
    refusal = "refused a connection libcurl asked for (not an IP connection)";
  } else if (!guard->is_proxy(*where)) {
    refusal = guard->policy_.check_address(guard->target_, *where);
    if (refusal.empty() && guard->loopback_only_ && classify(*where) != AddressKind::kLoopback) {
      refusal = "refused " + address_text(*where) + " for " + guard->target_.host +
                ": a token goes over plain http only to a loopback address";
    }
  }
  if (!refusal.empty()) {
    if (guard->refusal_.empty()) guard->refusal_ = std::move(refusal);
    return CURL_SOCKET_BAD;  // no socket, no connect: libcurl tries the next address, if any
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

}  // namespace fbr::server::egress
