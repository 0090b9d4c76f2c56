#include "tests/integration/smart_support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <sstream>
#include <stdexcept>

#include "tests/integration/harness.hpp"

namespace fbr::itest::smart {
namespace {

namespace jose = fbr::server::jose;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kAssertionType =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
constexpr std::int64_t kMostAssertionLife = 300;

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string form_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
               hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

/// Standard base64 (RFC 4648 §4) through jose's base64url decoder.
std::optional<std::string> base64_decode(std::string text) {
  while (!text.empty() && text.back() == '=')
    text.pop_back();
  for (char& c : text) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return jose::base64url_decode(text);
}

std::string oauth_error(std::string_view error, std::string_view description) {
  return R"({"error":)" + dispatch::json_string(error) + R"(,"error_description":)" +
         dispatch::json_string(description) + "}";
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    default:
      return "Status";
  }
}

}  // namespace

std::map<std::string, std::string> parse_form(std::string_view body) {
  std::map<std::string, std::string> out;
  while (!body.empty()) {
    const std::size_t amp = body.find('&');
    const std::string_view pair = body.substr(0, amp);
    const std::size_t eq = pair.find('=');
    out[form_decode(pair.substr(0, eq))] =
        eq == std::string_view::npos ? "" : form_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    body.remove_prefix(amp + 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ClientKey

ClientKey::ClientKey(jose::Alg alg) : key(jose::Key::generate(alg)), alg(alg), kid(key.kid()) {}

std::string ClientKey::jwks() const {
  return jose::jwks_json({{key, kid, alg}});
}

// ---------------------------------------------------------------------------------------------
// TokenServer

TokenServer::TokenServer() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    throw std::runtime_error("TokenServer: cannot listen");
  }
  port_ = ntohs(addr.sin_port);
  discovered_ = token_url();
  acceptor_ = std::thread([this] { accept_loop(); });
}

TokenServer::~TokenServer() {
  stop();
}

std::string TokenServer::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

void TokenServer::register_jwks(const std::string& client_id, const std::string& jwks_json) {
  std::lock_guard lock(mutex_);
  jwks_[client_id] = jose::KeySet::parse(jwks_json);
}

void TokenServer::register_secret(const std::string& client_id, const std::string& secret) {
  std::lock_guard lock(mutex_);
  client_secrets_[client_id] = secret;
}

void TokenServer::set_discovered_endpoint(std::string url) {
  std::lock_guard lock(mutex_);
  discovered_ = std::move(url);
}

void TokenServer::refuse_clients(std::string description) {
  answer_with(401, oauth_error("invalid_client", description));
}

void TokenServer::answer_with(int status, std::string body, std::string content_type) {
  std::lock_guard lock(mutex_);
  fixed_ = Reply{status, std::move(body), std::move(content_type)};
}

void TokenServer::set_delay(std::chrono::milliseconds delay) {
  std::lock_guard lock(mutex_);
  delay_ = delay;
}

void TokenServer::answer_normally() {
  std::lock_guard lock(mutex_);
  fixed_.reset();
  delay_ = std::chrono::milliseconds(0);
}

bool TokenServer::valid(std::string_view token) const {
  std::lock_guard lock(mutex_);
  return valid_.count(std::string(token)) > 0;
}

std::function<bool(std::string_view)> TokenServer::checker() const {
  return [this](std::string_view token) { return valid(token); };
}

void TokenServer::revoke_all() {
  std::lock_guard lock(mutex_);
  valid_.clear();
}

std::vector<std::string> TokenServer::issued() const {
  std::lock_guard lock(mutex_);
  return issued_;
}

std::vector<std::string> TokenServer::assertions() const {
  std::lock_guard lock(mutex_);
  return assertions_;
}

std::vector<std::string> TokenServer::refusals() const {
  std::lock_guard lock(mutex_);
  return refusals_;
}

std::vector<std::map<std::string, std::string>> TokenServer::forms() const {
  std::lock_guard lock(mutex_);
  return forms_;
}

std::vector<std::string> TokenServer::secrets() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out = issued_;
  out.insert(out.end(), assertions_.begin(), assertions_.end());
  for (const auto& [id, secret] : client_secrets_)
    out.push_back(secret);
  return out;
}

void TokenServer::stop() {
  if (stopping_.exchange(true)) return;
  stop_cv_.notify_all();
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (const int fd : open_fds_)
      ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_)
    t.join();
}

void TokenServer::accept_loop() {
  while (!stopping_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    std::lock_guard lock(mutex_);
    open_fds_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void TokenServer::serve(int fd) {
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string data;
  char buffer[4096];
  while (data.find("\r\n\r\n") == std::string::npos && data.size() < 65536) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    data.append(buffer, static_cast<std::size_t>(n));
  }
  const std::size_t head_end = data.find("\r\n\r\n");
  dispatch::TargetRequest request;
  std::istringstream lines(data.substr(0, head_end));
  std::string line;
  std::getline(lines, line);
  std::istringstream(line) >> request.method >> request.target;
  request.path = request.target.substr(0, request.target.find('?'));
  std::size_t content_length = 0;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    std::string name = line.substr(0, colon);
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "content-length") content_length = std::stoull(value);
    request.headers.emplace_back(name, value);
  }
  if (head_end != std::string::npos) {
    request.body = data.substr(head_end + 4);
    while (request.body.size() < content_length) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      request.body.append(buffer, static_cast<std::size_t>(n));
    }
  }

  Reply reply{404, R"({"error":"not_found"})"};
  if (request.method == "POST" && request.path == "/token") {
    ++token_requests_;
    reply = answer_token(request);
  } else if (request.method == "GET" && request.path == "/fhir/.well-known/smart-configuration") {
    ++discovery_requests_;
    std::lock_guard lock(mutex_);
    reply.status = 200;
    reply.body =
        R"({"token_endpoint": )" + dispatch::json_string(discovered_) +
        R"(, "token_endpoint_auth_methods_supported": ["private_key_jwt", )"
        R"("client_secret_basic"], "grant_types_supported": ["client_credentials"], )"
        R"("scopes_supported": ["system/*.read"], "capabilities": ["client-confidential-asymmetric"]})";
  }
  std::string out =
      "HTTP/1.1 " + std::to_string(reply.status) + " " + reason(reply.status) +
      "\r\nContent-Type: " + reply.content_type +
      "\r\nCache-Control: no-store\r\nContent-Length: " + std::to_string(reply.body.size()) +
      "\r\nConnection: close\r\n\r\n" + reply.body;
  send_all(fd, out);
  ::shutdown(fd, SHUT_RDWR);
  std::lock_guard lock(mutex_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  ::close(fd);
}

TokenServer::Reply TokenServer::answer_token(const dispatch::TargetRequest& request) {
  const auto form = parse_form(request.body);
  {
    std::unique_lock lock(mutex_);
    forms_.push_back(form);
    if (const auto it = form.find("client_assertion"); it != form.end()) {
      assertions_.push_back(it->second);
    }
    if (delay_.count() > 0) {
      stop_cv_.wait_for(lock, delay_, [this] { return stopping_.load(); });
    }
    if (fixed_) return *fixed_;
  }
  const auto type = request.header("content-type");
  if (!type || type->find("application/x-www-form-urlencoded") != 0) {
    return refuse("invalid_request: Content-Type is " + type.value_or("<none>"));
  }
  if (form.count("grant_type") == 0 || form.at("grant_type") != "client_credentials") {
    return refuse("unsupported_grant_type");
  }
  if (form.count("scope") == 0 || form.at("scope").empty()) return refuse("invalid_scope");
  const auto authorization = request.header("authorization");
  const auto refused = authorization ? check_basic(*authorization) : check_assertion(form);
  return refused ? *refused : issue();
}

TokenServer::Reply TokenServer::issue() {
  const std::string token = "at-" + new_log_id() + "-" + new_log_id();
  std::lock_guard lock(mutex_);
  valid_.insert(token);
  issued_.push_back(token);
  return Reply{200,
               R"({"access_token": ")" + token +
                   R"(", "token_type": "bearer", "expires_in": 300, "scope": "system/*.read"})"};
}

std::optional<TokenServer::Reply> TokenServer::check_basic(const std::string& authorization) {
  if (!authorization.starts_with("Basic ")) return refuse("invalid_client: not Basic");
  const auto decoded = base64_decode(authorization.substr(6));
  if (!decoded) return refuse("invalid_client: Basic is not base64");
  const std::size_t colon = decoded->find(':');
  if (colon == std::string::npos) return refuse("invalid_client: Basic has no colon");
  // RFC 6749 §2.3.1: both halves are form-encoded before base64.
  const std::string id = form_decode(decoded->substr(0, colon));
  const std::string secret = form_decode(decoded->substr(colon + 1));
  std::lock_guard lock(mutex_);
  const auto it = client_secrets_.find(id);
  if (it == client_secrets_.end() || it->second != secret) {
    refusals_.push_back("client secret");
    return Reply{401, oauth_error("invalid_client", "bad client secret")};
  }
  return std::nullopt;
}

std::optional<TokenServer::Reply> TokenServer::check_assertion(
    const std::map<std::string, std::string>& form) {
  if (form.count("client_assertion_type") == 0 ||
      form.at("client_assertion_type") != kAssertionType) {
    return refuse("invalid_request: client_assertion_type");
  }
  if (form.count("client_assertion") == 0) return refuse("invalid_request: no client_assertion");
  const std::string& assertion = form.at("client_assertion");
  const auto header = jose::peek_header(assertion);
  if (!header) return refuse("invalid_client: the assertion is not a JWS");
  if (header->typ != "JWT") return refuse("invalid_client: typ " + header->typ);
  if (header->kid.empty()) return refuse("invalid_client: no kid");
  const auto payload = [&]() -> std::optional<jose::Claims> {
    const std::size_t a = assertion.find('.');
    const std::size_t b = assertion.find('.', a + 1);
    if (a == std::string::npos || b == std::string::npos) return std::nullopt;
    const auto json = jose::base64url_decode(assertion.substr(a + 1, b - a - 1));
    return json ? jose::parse_claims(*json) : std::nullopt;
  }();
  if (!payload) return refuse("invalid_client: no claims");
  std::lock_guard lock(mutex_);
  const auto keys = jwks_.find(payload->iss);
  if (keys == jwks_.end()) {
    refusals_.push_back("unknown client " + payload->iss);
    return Reply{401, oauth_error("invalid_client", "unknown client")};
  }
  const jose::Verified verified = jose::verify_signature(assertion, keys->second, jose::all_algs());
  const std::int64_t now = std::time(nullptr);
  std::string why;
  if (!verified.ok()) {
    why = "signature: " + std::string(jose::reason_name(verified.failure));
  } else if (verified.claims.sub != payload->iss) {
    why = "sub is not iss";
  } else if (verified.claims.aud != std::vector<std::string>{token_url()}) {
    why = "aud is not " + token_url();
  } else if (!verified.claims.exp || *verified.claims.exp <= now) {
    why = "expired";
  } else if (*verified.claims.exp - now > kMostAssertionLife) {
    why = "exp more than 300 s ahead";
  } else if (verified.claims.jti.empty() || !jtis_.insert(verified.claims.jti).second) {
    why = "jti reused";
  }
  if (!why.empty()) {
    refusals_.push_back(why);
    return Reply{401, oauth_error("invalid_client", why)};
  }
  return std::nullopt;
}

TokenServer::Reply TokenServer::refuse(std::string why) {
  std::lock_guard lock(mutex_);
  refusals_.push_back(why);
  const std::string error = why.substr(0, why.find(':'));
  return Reply{400, oauth_error(error, why)};
}

}  // namespace fbr::itest::smart
