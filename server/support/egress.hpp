#pragma once
// The one gate for URLs that come from events (the download handler's files now; attachments and
// token endpoints later): which hosts may be asked, which addresses may be connected to, and
// which hosts get the access token. The decisions are pure functions of a Policy (unit-tested
// on their own); Guard wires them into a libcurl handle, where the address is checked after DNS,
// in CURLOPT_OPENSOCKETFUNCTION, before a socket exists: every connection and every redirect hop
// (the caller follows redirects itself, one hop per request, asking the Policy each time) is held
// to the policy, so a name that resolves to 10.0.0.5 on the second lookup (DNS rebinding) makes
// no connection either.
//
// Through a proxy (http_proxy, https_proxy, all_proxy in the environment, as libcurl reads them)
// the proxy resolves names: connections to the proxy itself are allowed, and only IP-literal
// hosts can be checked by address; the proxy must keep its own egress rules.
#include <curl/curl.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace fbr::server::egress {

/// Redirects followed per request, each hop held to the policy.
inline constexpr int kMaxRedirects = 5;

/// An IPv4 or IPv6 address.
struct Address {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  ///< v4: the first 4
  std::uint16_t port = 0;                ///< when it comes from a socket address
  [[nodiscard]] bool operator==(const Address& other) const = default;
};

/// An IP literal ("10.0.0.5", "::1", "[fe80::1]"); nullopt for a name.
std::optional<Address> parse_address(std::string_view literal);
/// A socket address (AF_INET, AF_INET6); nullopt for other families.
std::optional<Address> address_of(const sockaddr* address, std::size_t length);
/// "10.0.0.5", "::1" (no port).
std::string address_text(const Address& address);

enum class AddressKind {
  kPublic,
  kLoopback,     ///< 127/8, ::1
  kPrivate,      ///< RFC 1918, fec0::/10 (site-local), 64:ff9b:1::/48 (local NAT64)
  kLinkLocal,    ///< 169.254/16, fe80::/10
  kShared,       ///< 100.64/10 (carrier-grade NAT)
  kUniqueLocal,  ///< fc00::/7
  kMulticast,    ///< 224/4, ff00::/8
  kUnspecified,  ///< 0/8, ::
  kBroadcast,    ///< 255.255.255.255
  kReserved,     ///< 240/4, benchmarking, documentation, IETF protocol and discard ranges
};

/// The kind of an address; v4-mapped (::ffff:a.b.c.d), v4-compatible (::a.b.c.d), NAT64
/// (64:ff9b::/96) and 6to4 (2002::/16) forms are the kind of the IPv4 address they carry.
AddressKind classify(const Address& address);
/// "private address", "loopback address", ... for messages.
std::string_view describe(AddressKind kind);

/// A host as compared: lower case, no trailing dot, no brackets, IP literals in canonical form.
std::string normalize_host(std::string_view host);
/// Whether `host` matches `pattern`: the same name, or for "*.suffix" a name that ends in
/// ".suffix" (not "suffix" itself, not "evilsuffix"), or the same IP address. Case-insensitive;
/// trailing dots ignored.
bool host_matches(std::string_view pattern, std::string_view host);

/// Where a URL leads, as libcurl's own URL parser reads it (no second parser to disagree with).
struct Target {
  std::string scheme;  ///< "http" or "https"
  std::string host;    ///< normalized (see normalize_host)
  int port = 0;
  [[nodiscard]] bool same_origin(const Target& other) const {
    return scheme == other.scheme && host == other.host && port == other.port;
  }
};
/// The target of an absolute http:// or https:// URL; nullopt (and `error`) otherwise.
std::optional<Target> parse_target(std::string_view url, std::string& error);

/// Whether an access token may go to a target, and if not, why (naming the setting).
struct TokenDecision {
  bool send = false;
  std::string why_not;
};

class Policy {
 public:
  explicit Policy(const config::Egress& settings);

  /// Empty when `target` may be asked at all (its host allowed; an IP literal's address
  /// allowed), else the refusal, e.g. "refused host evil.example: not in allowed_hosts".
  [[nodiscard]] std::string check_host(const Target& target) const;
  /// Empty when `address` may be connected to for `target`, else the refusal, e.g. "refused
  /// 10.0.0.5 for files.example: private address (allow with allowed_hosts or
  /// allow_private_addresses)".
  [[nodiscard]] std::string check_address(const Target& target, const Address& address) const;

  /// The hosts that get the token for an event whose `request` is `request_url`: token_hosts
  /// when set, else the request URL's host, else none.
  [[nodiscard]] std::vector<std::string> token_hosts(
      const std::optional<std::string>& request_url) const;
  /// A token only to a token host, over https; over plain http only to a loopback host
  /// ("localhost" or a loopback literal) listed by name in allowed_hosts.
  [[nodiscard]] TokenDecision token_for(const Target& target,
                                        const std::vector<std::string>& token_hosts) const;

  /// Whether `host` matches an allowed_hosts pattern.
  [[nodiscard]] bool listed(std::string_view host) const;

 private:
  std::vector<std::string> allowed_;  // normalized patterns
  bool allow_private_;
  std::optional<std::vector<std::string>> token_hosts_;
};

/// The addresses (with port) of a proxy setting such as "http://127.0.0.1:3128" or "proxy:8080"
/// (default port 1080, as libcurl's); a proxy name is resolved (getaddrinfo). Empty when the
/// setting is empty or unusable.
std::vector<Address> proxy_addresses(std::string_view setting);

/// The proxies the environment names for libcurl (http_proxy, https_proxy, HTTPS_PROXY,
/// all_proxy, ALL_PROXY), as the addresses a connection to them goes to. Read once, when a
/// handler is built, and handed to each Guard.
std::vector<Address> environment_proxies();

/// The policy in a libcurl handle: allows only http and https, and checks each address in
/// CURLOPT_OPENSOCKETFUNCTION against the current hop's target. One per handle, outliving it.
class Guard {
 public:
  /// `proxies` (environment_proxies()) may always be connected to; both outlive the Guard.
  Guard(const Policy& policy, const std::vector<Address>& proxies);
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  void install(CURL* curl);
  /// The hop about to be requested. `loopback_only`: a token goes over plain http, so the
  /// connection must be to a loopback address whatever the policy allows.
  void set_target(const Target& target, bool loopback_only);
  /// The first refusal of the current hop (no connection was made for it); empty if none.
  [[nodiscard]] const std::string& refusal() const { return refusal_; }

 private:
  static curl_socket_t open_socket(void* self, curlsocktype purpose, curl_sockaddr* address);
  [[nodiscard]] bool is_proxy(const Address& address) const;

  const Policy& policy_;
  Target target_;
  bool loopback_only_ = false;
  std::string refusal_;
  const std::vector<Address>& proxies_;  // the environment's proxies (address and port)
};

}  // namespace fbr::server::egress
