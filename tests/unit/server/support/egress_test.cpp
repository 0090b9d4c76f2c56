// The egress policy's pure decisions: the address classifier (every range, the v4-carrying IPv6
// forms, the edges of each range), host matching, URL targets, and where a token may go.
#include "server/support/egress.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/url.hpp"

namespace fbr::server::egress {
namespace {

AddressKind kind(const std::string& literal) {
  const auto address = parse_address(literal);
  INFO(literal);
  REQUIRE(address.has_value());
  return classify(*address);
}

Target target(const std::string& url) {
  std::string error;
  const auto t = parse_target(url, error);
  INFO(url << ": " << error);
  REQUIRE(t.has_value());
  return *t;
}

config::Egress settings(std::vector<std::string> allowed, bool allow_private = false,
                        std::optional<std::vector<std::string>> token_hosts = std::nullopt) {
  config::Egress e;
  e.allowed_hosts = std::move(allowed);
  e.allow_private_addresses = allow_private;
  e.token_hosts = std::move(token_hosts);
  return e;
}

TEST_CASE("egress classify: IPv4 ranges and their edges") {
  using K = AddressKind;
  CHECK(kind("0.0.0.0") == K::kUnspecified);
  CHECK(kind("0.255.255.255") == K::kUnspecified);
  CHECK(kind("1.0.0.0") == K::kPublic);
  CHECK(kind("9.255.255.255") == K::kPublic);
  CHECK(kind("10.0.0.0") == K::kPrivate);
  CHECK(kind("10.255.255.255") == K::kPrivate);
  CHECK(kind("11.0.0.0") == K::kPublic);
  CHECK(kind("100.63.255.255") == K::kPublic);
  CHECK(kind("100.64.0.0") == K::kShared);
  CHECK(kind("100.127.255.255") == K::kShared);
  CHECK(kind("100.128.0.0") == K::kPublic);
  CHECK(kind("126.255.255.255") == K::kPublic);
  CHECK(kind("127.0.0.0") == K::kLoopback);
  CHECK(kind("127.0.0.1") == K::kLoopback);
  CHECK(kind("127.255.255.255") == K::kLoopback);
  CHECK(kind("128.0.0.0") == K::kPublic);
  CHECK(kind("169.253.255.255") == K::kPublic);
  CHECK(kind("169.254.0.0") == K::kLinkLocal);
  CHECK(kind("169.254.169.254") == K::kLinkLocal);
  CHECK(kind("169.254.255.255") == K::kLinkLocal);
  CHECK(kind("169.255.0.0") == K::kPublic);
  CHECK(kind("172.15.255.255") == K::kPublic);
  CHECK(kind("172.16.0.0") == K::kPrivate);
  CHECK(kind("172.31.255.255") == K::kPrivate);
  CHECK(kind("172.32.0.0") == K::kPublic);
  CHECK(kind("192.167.255.255") == K::kPublic);
  CHECK(kind("192.168.0.0") == K::kPrivate);
  CHECK(kind("192.168.255.255") == K::kPrivate);
  CHECK(kind("192.169.0.0") == K::kPublic);
  CHECK(kind("192.0.0.8") == K::kReserved);
  CHECK(kind("192.0.2.1") == K::kReserved);
  CHECK(kind("198.18.0.1") == K::kReserved);
  CHECK(kind("198.19.255.255") == K::kReserved);
  CHECK(kind("198.20.0.0") == K::kPublic);
  CHECK(kind("223.255.255.255") == K::kPublic);
  CHECK(kind("224.0.0.0") == K::kMulticast);
  CHECK(kind("239.255.255.255") == K::kMulticast);
  CHECK(kind("240.0.0.0") == K::kReserved);
  CHECK(kind("255.255.255.254") == K::kReserved);
  CHECK(kind("255.255.255.255") == K::kBroadcast);
  CHECK(kind("8.8.8.8") == K::kPublic);
}

TEST_CASE("egress classify: IPv6 ranges and the forms that carry an IPv4 address") {
  using K = AddressKind;
  CHECK(kind("::") == K::kUnspecified);
  CHECK(kind("::1") == K::kLoopback);
  CHECK(kind("[::1]") == K::kLoopback);
  CHECK(kind("fe80::") == K::kLinkLocal);
  CHECK(kind("fe80::1") == K::kLinkLocal);
  CHECK(kind("febf:ffff::1") == K::kLinkLocal);
  CHECK(kind("fec0::1") == K::kPrivate);
  CHECK(kind("fc00::") == K::kUniqueLocal);
  CHECK(kind("fd12:3456::1") == K::kUniqueLocal);
  CHECK(kind("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == K::kUniqueLocal);
  CHECK(kind("fbff:ffff::1") == K::kPublic);
  CHECK(kind("fe00::1") == K::kPublic);
  CHECK(kind("ff02::1") == K::kMulticast);
  CHECK(kind("ff00::") == K::kMulticast);
  CHECK(kind("2001:db8::1") == K::kReserved);
  CHECK(kind("100::1") == K::kReserved);
  CHECK(kind("2606:4700::1111") == K::kPublic);
  // v4-mapped
  CHECK(kind("::ffff:127.0.0.1") == K::kLoopback);
  CHECK(kind("::ffff:7f00:1") == K::kLoopback);
  CHECK(kind("::FFFF:10.0.0.5") == K::kPrivate);
  CHECK(kind("::ffff:169.254.169.254") == K::kLinkLocal);
  CHECK(kind("::ffff:192.168.1.1") == K::kPrivate);
  CHECK(kind("::ffff:100.64.0.1") == K::kShared);
  CHECK(kind("::ffff:0.0.0.0") == K::kUnspecified);
  CHECK(kind("::ffff:8.8.8.8") == K::kPublic);
  // v4-compatible (deprecated, but a kernel may still route it)
  CHECK(kind("::127.0.0.1") == K::kLoopback);
  CHECK(kind("::10.0.0.5") == K::kPrivate);
  CHECK(kind("::8.8.8.8") == K::kPublic);
  // NAT64 well-known prefix, local-use NAT64, 6to4
  CHECK(kind("64:ff9b::127.0.0.1") == K::kLoopback);
  CHECK(kind("64:ff9b::a9fe:a9fe") == K::kLinkLocal);
  CHECK(kind("64:ff9b::10.1.2.3") == K::kPrivate);
  CHECK(kind("64:ff9b::8.8.8.8") == K::kPublic);
  CHECK(kind("64:ff9b:1::1") == K::kPrivate);
  CHECK(kind("2002:a00:1::") == K::kPrivate);
  CHECK(kind("2002:7f00:1::") == K::kLoopback);
  CHECK(kind("2002:808:808::") == K::kPublic);
}

TEST_CASE("egress parse_address: literals only, names and odd forms are not addresses") {
  CHECK(parse_address("10.0.0.5").has_value());
  CHECK(parse_address("[fe80::1]").has_value());
  CHECK_FALSE(parse_address("files.example").has_value());
  CHECK_FALSE(parse_address("").has_value());
  CHECK_FALSE(parse_address("[]").has_value());
  CHECK_FALSE(parse_address("127.1").has_value());       // libcurl normalizes it in URLs
  CHECK_FALSE(parse_address("0x7f.0.0.1").has_value());  // ditto; the connect check sees it
  CHECK_FALSE(parse_address("10.0.0.256").has_value());
  CHECK(address_text(*parse_address("::FFFF:127.0.0.1")) == "::ffff:127.0.0.1");
}

TEST_CASE("egress host_matches: exact, *.suffix, case, trailing dot, IP literals") {
  CHECK(host_matches("files.example", "files.example"));
  CHECK(host_matches("files.example", "FILES.Example"));
  CHECK(host_matches("Files.Example.", "files.example"));
  CHECK(host_matches("files.example", "files.example."));
  CHECK_FALSE(host_matches("files.example", "xfiles.example"));
  CHECK_FALSE(host_matches("files.example", "files.example.evil"));
  CHECK(host_matches("*.s3.example", "bucket.s3.example"));
  CHECK(host_matches("*.s3.example", "a.b.s3.example"));
  CHECK(host_matches("*.s3.example", "Bucket.S3.Example."));
  CHECK_FALSE(host_matches("*.s3.example", "s3.example"));
  CHECK_FALSE(host_matches("*.s3.example", "evils3.example"));
  CHECK_FALSE(host_matches("*.s3.example", "bucket.s3.example.evil"));
  CHECK_FALSE(host_matches("*.s3.example", ".s3.example"));
  CHECK(host_matches("127.0.0.1", "127.0.0.1"));
  CHECK_FALSE(host_matches("127.0.0.1", "127.0.0.2"));
  CHECK(host_matches("[::1]", "::1"));
  CHECK(host_matches("::ffff:7f00:1", "[::ffff:127.0.0.1]"));
  CHECK(host_matches("fd00::5", "FD00:0:0::5"));
  CHECK_FALSE(host_matches("", ""));
}

TEST_CASE("egress parse_target: libcurl's reading of scheme, host and port") {
  const Target t = target("HTTPS://User:pw@Files.Example.:8443/a?sig=1#f");
  CHECK(t.scheme == "https");
  CHECK(t.host == "files.example");
  CHECK(t.port == 8443);
  CHECK(target("http://files.example/x").port == 80);
  CHECK(target("https://files.example/x").port == 443);
  CHECK(target("http://[::1]:81/").host == "::1");
  // libcurl normalizes the numeric forms of IPv4: what it will connect to is what is checked.
  CHECK(target("http://127.1/").host == "127.0.0.1");
  CHECK(target("http://0x7f000001/").host == "127.0.0.1");
  CHECK(target("http://2130706433/").host == "127.0.0.1");
  std::string error;
  CHECK_FALSE(parse_target("ftp://files.example/x", error).has_value());
  CHECK(error.find("ftp") != std::string::npos);
  CHECK_FALSE(parse_target("file:///etc/passwd", error).has_value());
  CHECK_FALSE(parse_target("not a url", error).has_value());
  CHECK_FALSE(parse_target("gopher://127.0.0.1:25/", error).has_value());
  CHECK(target("http://a/").same_origin(target("http://A:80/b")));
  CHECK_FALSE(target("http://a/").same_origin(target("https://a/")));
  CHECK_FALSE(target("http://a/").same_origin(target("http://a:81/")));
  CHECK_FALSE(target("http://a/").same_origin(target("http://b/")));
}

TEST_CASE("egress policy: private addresses are refused by default, naming the setting") {
  const Policy open(settings({}));
  CHECK(open.check_host(target("https://files.example/x")).empty());
  CHECK(open.check_host(target("https://8.8.8.8/x")).empty());
  CHECK(open.check_host(target("http://10.0.0.5/x")) ==
        "refused 10.0.0.5: private address (allow with allowed_hosts or "
        "allow_private_addresses)");
  CHECK(open.check_host(target("http://169.254.169.254/latest/meta-data")) ==
        "refused 169.254.169.254: link-local address (allow with allowed_hosts or "
        "allow_private_addresses)");
  CHECK(
      open.check_host(target("http://127.0.0.1:8080/")).starts_with("refused 127.0.0.1: loopback"));
  CHECK(open.check_host(target("http://[::ffff:10.0.0.5]/"))
            .starts_with("refused ::ffff:10.0.0.5: private"));
  CHECK(open.check_host(target("http://[64:ff9b::a9fe:a9fe]/")).find("link-local") !=
        std::string::npos);
  CHECK(open.check_host(target("http://0.0.0.0:80/")).find("unspecified") != std::string::npos);
  // After DNS: the name, its address and the setting.
  CHECK(open.check_address(target("https://files.example/x"), *parse_address("10.0.0.5")) ==
        "refused 10.0.0.5 for files.example: private address (allow with allowed_hosts or "
        "allow_private_addresses)");
  CHECK(open.check_address(target("https://files.example/x"), *parse_address("93.184.215.14"))
            .empty());
  CHECK(open.check_address(target("https://localhost/x"), *parse_address("::1"))
            .starts_with("refused ::1 for localhost: loopback"));

  const Policy any_private(settings({}, true));
  CHECK(any_private.check_host(target("http://10.0.0.5/x")).empty());
  CHECK(
      any_private.check_address(target("https://f.example/"), *parse_address("127.0.0.1")).empty());
}

TEST_CASE("egress policy: allowed_hosts limits the hosts and lets the listed ones be private") {
  const Policy p(settings({"*.s3.example", "127.0.0.1", "files.example"}));
  CHECK(p.check_host(target("https://bucket.s3.example/x")).empty());
  CHECK(p.check_host(target("http://127.0.0.1:9000/x")).empty());
  CHECK(p.check_host(target("https://evil.example/x")) ==
        "refused host evil.example: not in allowed_hosts");
  CHECK(p.check_host(target("https://evils3.example/x")) ==
        "refused host evils3.example: not in allowed_hosts");
  CHECK(p.check_host(target("http://127.0.0.2/x")) ==
        "refused host 127.0.0.2: not in allowed_hosts");
  // A listed name may resolve to a private address; another name may not, even when allowed
  // by a wildcard... which is also a listing: *.s3.example names are the operator's.
  CHECK(p.check_address(target("https://files.example/"), *parse_address("10.1.1.1")).empty());
  CHECK(p.check_address(target("https://b.s3.example/"), *parse_address("10.1.1.1")).empty());
  const Policy names(settings({"files.example"}));
  CHECK(names.check_address(target("https://other.example/"), *parse_address("10.1.1.1"))
            .starts_with("refused 10.1.1.1 for other.example"));
}

TEST_CASE("egress token: only to token hosts, over https, plain http only to listed loopback") {
  const Policy p(settings({"127.0.0.1", "127.0.0.2", "files.example", "*.s3.example"}));
  const std::vector<std::string> ehr =
      p.token_hosts(std::string("https://EHR.example/fhir/$export?x"));
  CHECK(ehr == std::vector<std::string>{"ehr.example"});
  CHECK(p.token_hosts(std::nullopt).empty());
  CHECK(p.token_hosts(std::string("not a url")).empty());
  CHECK(p.token_for(target("https://ehr.example/file"), ehr).send);
  const TokenDecision other = p.token_for(target("https://files.example/file"), ehr);
  CHECK_FALSE(other.send);
  CHECK(other.why_not.find("files.example is not in token_hosts") != std::string::npos);
  // Plain http: never to a non-loopback host, even a token host.
  const TokenDecision plain = p.token_for(target("http://ehr.example/file"), ehr);
  CHECK_FALSE(plain.send);
  CHECK(plain.why_not.find("plain http") != std::string::npos);
  const std::vector<std::string> files = {"files.example"};
  CHECK_FALSE(p.token_for(target("http://files.example/f"), files).send);
  // Plain http to a loopback host listed by name in allowed_hosts.
  const std::vector<std::string> local = {"127.0.0.1", "127.0.0.3"};
  CHECK(p.token_for(target("http://127.0.0.1:81/f"), local).send);
  CHECK_FALSE(p.token_for(target("http://127.0.0.3:81/f"), local).send);  // not listed
  const Policy wildcard_only(settings({"*.localhost"}));
  CHECK_FALSE(wildcard_only.token_for(target("http://a.localhost/f"), {"a.localhost"}).send);
  const Policy open(settings({}, true));
  CHECK_FALSE(open.token_for(target("http://127.0.0.1/f"), local).send);  // listed: required
  // token_hosts set: the request's host does not count.
  const Policy set(settings({}, false, std::vector<std::string>{"*.api.example"}));
  const auto hosts = set.token_hosts(std::string("https://ehr.example/"));
  CHECK(set.token_for(target("https://x.api.example/f"), hosts).send);
  CHECK_FALSE(set.token_for(target("https://ehr.example/f"), hosts).send);
}

TEST_CASE("redacted_url: query, fragment and password cut, user kept") {
  using core::redacted_url;
  CHECK(redacted_url("https://s3.example/b/f.ndjson?X-Amz-Signature=abc&X-Amz-Credential=k") ==
        "https://s3.example/b/f.ndjson");
  CHECK(redacted_url("https://u:pw@h.example:8443/in?token=x#f") ==
        "https://u:<redacted>@h.example:8443/in");
  CHECK(redacted_url("nats://bare-token@n2:4222") == "nats://<redacted>@n2:4222");
  CHECK(redacted_url("http://hooks.test/a@b") == "http://hooks.test/a@b");
  CHECK(redacted_url("https://h.example/p#frag?x") == "https://h.example/p");
  CHECK(redacted_url("https://h@x.example?y@z") == "https://<redacted>@x.example");
  CHECK(redacted_url("n1:4222") == "n1:4222");
}

TEST_CASE("egress proxies: a proxy setting's addresses, and the environment's read once") {
  const auto with_port = proxy_addresses("http://127.0.0.9:3128");
  REQUIRE(with_port.size() == 1);
  CHECK(address_text(with_port[0]) == "127.0.0.9");
  CHECK(with_port[0].port == 3128);
  const auto bare = proxy_addresses("[::1]");  // no scheme, no port: libcurl's 1080
  REQUIRE(bare.size() == 1);
  CHECK(address_text(bare[0]) == "::1");
  CHECK(bare[0].port == 1080);
  CHECK(proxy_addresses("").empty());

  const char* before = std::getenv("ALL_PROXY");
  const std::string saved = before == nullptr ? "" : before;
  REQUIRE(::setenv("ALL_PROXY", "127.0.0.8:8080", 1) == 0);
  const auto proxies = environment_proxies();
  if (before == nullptr) {
    ::unsetenv("ALL_PROXY");
  } else {
    ::setenv("ALL_PROXY", saved.c_str(), 1);
  }
  Address expected = *parse_address("127.0.0.8");
  expected.port = 8080;
  CHECK(std::find(proxies.begin(), proxies.end(), expected) != proxies.end());
  // A Guard uses the list it was given, not the environment as it is now.
  const Policy policy(settings({}));
  const Guard guard(policy, proxies);
  CHECK(guard.refusal().empty());
}

}  // namespace
}  // namespace fbr::server::egress
