#pragma once
// Helpers for the config tests: parse text with an explicit Environment, never the real one.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace fbr::config::test {

/// Most tests need a token to get past the "at least one token" rule; it comes from here.
inline const Environment kTokenEnv = {{"FBR_VERIFICATION_TOKEN", "env-token"}};

inline std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors)
    out += e + "\n";
  return out;
}

inline LoadResult parse(std::string_view text, const Environment& env = kTokenEnv) {
  return parse_config(text, env, "test.json");
}

/// Parses text that must be valid, failing the test with the errors otherwise.
inline Config parse_ok(std::string_view text, const Environment& env = kTokenEnv) {
  LoadResult result = parse(text, env);
  INFO(joined(result.errors));
  REQUIRE(result.ok());
  REQUIRE(result.config.has_value());
  return *result.config;
}

/// Every error of text that must be invalid.
inline std::vector<std::string> errors_of(std::string_view text,
                                          const Environment& env = kTokenEnv) {
  LoadResult result = parse(text, env);
  CHECK_FALSE(result.ok());
  CHECK_FALSE(result.config.has_value());
  return result.errors;
}

/// The one error of text that must be invalid in exactly one way.
inline std::string error_of(std::string_view text, const Environment& env = kTokenEnv) {
  const auto errors = errors_of(text, env);
  INFO(joined(errors));
  REQUIRE(errors.size() == 1);
  return errors.front();
}

/// `{"handlers": [handler]}`
inline std::string with_handler(std::string_view handler) {
  return R"({"handlers": [)" + std::string(handler) + "]}";
}

inline bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

}  // namespace fbr::config::test
