#pragma once
// The access token the download handler sends (as `Authorization: Bearer`) when an event says
// requiresAccessToken: from an environment variable (read once, at start), a file (read at each
// delivery, so it can be rotated) or a command whose stdout is the token (run at each delivery,
// and once more when a server answers 401). A token is never logged and never put in a message. The
// command runs isolated like every child (process.hpp): fds 0-2, PATH, HOME, LANG, TZ and its
// token_command_env only.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace fbr::server::download {

/// Where tokens come from (one per handler).
class TokenSource {
 public:
  /// Reads token_env now; throws std::runtime_error naming the handler and the variable when it
  /// is unset or not a usable token.
  TokenSource(const config::DownloadHandler& settings, const std::string& handler);

  [[nodiscard]] bool configured() const;
  /// Whether a new token can be had after a 401 (a token_command).
  [[nodiscard]] bool renewable() const { return !command_.empty(); }
  /// "token_env NAME", "token_file PATH" or "token_command PROGRAM", for messages.
  [[nodiscard]] const std::string& description() const { return description_; }
  /// Gets a token; throws std::runtime_error (naming the source, never the token).
  [[nodiscard]] std::string fetch() const;

 private:
  std::string env_token_;
  std::string file_;
  std::vector<std::string> command_;
  std::vector<std::string> command_env_;  ///< token_command_env resolved at start, NAME=value
  std::string description_;
};

/// The token of one delivery, shared by its transfer threads: fetched on first use, renewed at
/// most once (after a 401).
class TokenSession {
 public:
  explicit TokenSession(const TokenSource& source) : source_(source) {}

  struct Token {
    std::string value;
    int generation = 0;
  };
  /// The current token; throws when it cannot be had.
  Token current();
  /// After a 401 with the token of `generation`: a new token, or nullopt when there is none to
  /// try (not renewable, or already renewed in this delivery). Throws when renewing fails.
  std::optional<Token> renew_after_401(int generation);

 private:
  const TokenSource& source_;
  std::mutex mutex_;
  std::optional<Token> token_;
  bool renewed_ = false;
};

/// `raw` without surrounding whitespace, if it is a usable bearer token (visible ASCII only).
std::optional<std::string> clean_token(std::string_view raw);

}  // namespace fbr::server::download
