#include "server/handlers/download/token.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "server/handlers/download/token_endpoint.hpp"
#include "server/support/posix.hpp"
#include "server/support/process.hpp"

namespace fbr::server::download {
namespace {

constexpr std::size_t kMaxTokenBytes = 64 * 1024;
constexpr std::chrono::milliseconds kCommandTimeout{30'000};

}  // namespace

std::optional<std::string> clean_token(std::string_view raw) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!raw.empty() && space(raw.front()))
    raw.remove_prefix(1);
  while (!raw.empty() && space(raw.back()))
    raw.remove_suffix(1);
  if (raw.empty() || raw.size() > kMaxTokenBytes) return std::nullopt;
  for (const char c : raw) {
    if (c < 0x21 || c > 0x7e) return std::nullopt;
  }
  return std::string(raw);
}

TokenSource::TokenSource(const config::DownloadHandler& settings, const std::string& handler)
    : file_(settings.token_file),
      command_(settings.token_command),
      command_env_(process::resolve_environment(settings.token_command_env,
                                                "handler " + handler + ": token_command_env")) {
  if (settings.auth.enabled()) {
    description_ = "auth " + settings.auth.type;
    endpoint_ = std::make_shared<TokenEndpoint>(settings, handler);
  } else if (!settings.token_env.empty()) {
    description_ = "token_env " + settings.token_env;
    const char* value = std::getenv(settings.token_env.c_str());
    if (value == nullptr) {
      throw std::runtime_error("handler " + handler + ": token_env names the environment " +
                               "variable " + settings.token_env + ", which is not set");
    }
    const auto token = clean_token(value);
    if (!token) {
      throw std::runtime_error("handler " + handler + ": the environment variable " +
                               settings.token_env + " does not hold a usable token");
    }
    env_token_ = *token;
  } else if (!file_.empty()) {
    description_ = "token_file " + file_;
  } else if (!command_.empty()) {
    description_ = "token_command " + command_.front();
  }
}

TokenSource::~TokenSource() = default;

bool TokenSource::configured() const {
  return endpoint_ != nullptr || !env_token_.empty() || !file_.empty() || !command_.empty();
}

TokenSource::Token TokenSource::fetch_token() const {
  if (endpoint_) {
    auto token = endpoint_->get();
    return {std::move(token.value), token.serial};
  }
  return {read_token(), 1};
}

TokenSource::Token TokenSource::renew(const Token& refused) const {
  if (endpoint_) {
    auto token = endpoint_->renew(refused.generation);
    return {std::move(token.value), token.serial};
  }
  return {read_token(), refused.generation + 1};
}

std::string TokenSource::read_token() const {
  if (!env_token_.empty()) return env_token_;
  if (!file_.empty()) {
    std::ifstream in(file_, std::ios::binary);
    if (!in) {
      throw std::runtime_error(description_ + ": cannot read it: " + posix::errno_text(errno));
    }
    std::string text(kMaxTokenBytes + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    const auto token = clean_token(text);
    if (!token) throw std::runtime_error(description_ + ": the file holds no usable token");
    return *token;
  }
  if (!command_.empty()) {
    process::Spec spec;
    spec.argv = command_;
    spec.env = command_env_;  // on top of PATH, HOME, LANG, TZ: nothing else of ours
    spec.timeout = kCommandTimeout;
    spec.keep_output = kMaxTokenBytes + 1;
    const process::Result result = process::run(spec);
    // stdout is the token: no message may show it; stderr is the command's own diagnostics.
    const std::string stderr_text =
        result.err.empty()
            ? ""
            : ": " + result.err.substr(result.err.size() > 500 ? result.err.size() - 500 : 0);
    if (result.spawn_error != 0) {
      throw std::runtime_error(description_ +
                               ": cannot run it: " + posix::errno_text(result.spawn_error));
    }
    if (result.timed_out) {
      throw std::runtime_error(description_ + ": killed after " +
                               std::to_string(kCommandTimeout.count()) + " ms" + stderr_text);
    }
    if (!result.exited_zero()) {
      throw std::runtime_error(description_ + ": it failed" + stderr_text);
    }
    const auto token = result.out_bytes > kMaxTokenBytes ? std::nullopt : clean_token(result.out);
    if (!token) {
      throw std::runtime_error(description_ + ": its output is not a usable token" + stderr_text);
    }
    return *token;
  }
  throw std::runtime_error("no token_env, token_file, token_command or auth is configured");
}

TokenSession::Token TokenSession::current() {
  std::lock_guard lock(mutex_);
  if (failure_) std::rethrow_exception(failure_);
  // A token endpoint's token is asked for at each use: the handler's cache answers, and renews
  // it before it expires, also in a delivery that outlasts it.
  if (!token_ || source_.caches()) {
    try {
      token_ = source_.fetch_token();
    } catch (...) {
      failure_ = std::current_exception();
      throw;
    }
  }
  return *token_;
}

std::optional<TokenSession::Token> TokenSession::renew_after_401(std::uint64_t generation) {
  std::lock_guard lock(mutex_);
  if (token_ && token_->generation != generation) return *token_;  // another thread renewed it
  if (!source_.renewable() || renewed_ || !token_) return std::nullopt;
  renewed_ = true;
  token_ = source_.renew(*token_);
  return *token_;
}

}  // namespace fbr::server::download
