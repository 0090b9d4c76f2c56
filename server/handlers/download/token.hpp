#pragma once
// The access token the download handler sends (as `Authorization: Bearer`) when an event says
// requiresAccessToken: from an environment variable (read once, at start), a file (read at each
// delivery, so it can be rotated), a command whose stdout is the token (run at each delivery,
// and once more when a server answers 401), or an OAuth 2.0 token endpoint (`auth`: SMART Backend
// Services or client_credentials, token_endpoint.hpp; the token cached per handler and asked for
// again once after a 401). A token is never logged and never put in a message. The command runs
// isolated like every child (process.hpp): fds 0-2, PATH, HOME, LANG, TZ and its
// token_command_env only.
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace fbr::server::download {

class TokenEndpoint;

/// Why no token could be had (never showing one). `permanent`: it will fail the same way at the
/// next attempt (the egress policy refused the token endpoint), so the file is not retried.
class TokenError : public std::runtime_error {
 public:
  explicit TokenError(const std::string& message, bool permanent = false)
      : std::runtime_error(message), permanent_(permanent) {}
  [[nodiscard]] bool permanent() const { return permanent_; }

 private:
  bool permanent_;
};

/// Where tokens come from (one per handler).
class TokenSource {
 public:
  /// A token and which one it is: a token_command's run, or the token endpoint's serial number.
  struct Token {
    std::string value;
    std::uint64_t generation = 0;
  };

  /// Reads token_env now, or sets up `auth` (its key, algorithm and secret); throws
  /// std::runtime_error naming the handler and the variable or file when something is unusable.
  TokenSource(const config::DownloadHandler& settings, const std::string& handler);
  ~TokenSource();
  TokenSource(const TokenSource&) = delete;
  TokenSource& operator=(const TokenSource&) = delete;

  [[nodiscard]] bool configured() const;
  /// Whether a new token can be had after a 401 (a token_command, a token endpoint).
  [[nodiscard]] bool renewable() const { return !command_.empty() || endpoint_ != nullptr; }
  /// Whether the source keeps a token of its own while it is fresh (a token endpoint).
  [[nodiscard]] bool caches() const { return endpoint_ != nullptr; }
  /// "token_env NAME", "token_file PATH", "token_command PROGRAM" or "auth TYPE", for messages.
  [[nodiscard]] const std::string& description() const { return description_; }
  /// Gets a token (from a token endpoint: the handler's cached one while it is fresh); throws
  /// std::runtime_error (naming the source, never the token).
  [[nodiscard]] Token fetch_token() const;
  [[nodiscard]] std::string fetch() const { return fetch_token().value; }
  /// A new token after `refused` (of this source) was answered 401; throws as fetch() does.
  [[nodiscard]] Token renew(const Token& refused) const;

 private:
  [[nodiscard]] std::string read_token() const;

  std::shared_ptr<TokenEndpoint> endpoint_;  ///< set with `auth`
  std::string env_token_;
  std::string file_;
  std::vector<std::string> command_;
  std::vector<std::string> command_env_;  ///< token_command_env resolved at start, NAME=value
  std::string description_;
};

/// The token of one delivery, shared by its transfer threads: fetched on first use (from a token
/// endpoint: asked for at each use, the handler's cache answering), renewed at most once (after a
/// 401). A failure to get one is remembered: the delivery's other files fail with it at once
/// instead of asking again.
class TokenSession {
 public:
  explicit TokenSession(const TokenSource& source) : source_(source) {}

  using Token = TokenSource::Token;
  /// The current token; throws when it cannot be had.
  Token current();
  /// After a 401 with the token of `generation`: a new token, or nullopt when there is none to
  /// try (not renewable, or already renewed in this delivery). Throws when renewing fails.
  std::optional<Token> renew_after_401(std::uint64_t generation);

 private:
  const TokenSource& source_;
  std::mutex mutex_;
  std::optional<Token> token_;
  std::exception_ptr failure_;
  bool renewed_ = false;
};

/// `raw` without surrounding whitespace, if it is a usable bearer token (visible ASCII only).
std::optional<std::string> clean_token(std::string_view raw);

}  // namespace fbr::server::download
