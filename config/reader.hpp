#pragma once
// Reading JSON values into the config, recording every error with its key path. The kinds of
// settings (kinds.hpp) are made of these reads; no message ever echoes a secret.
#include <rapidjson/document.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/text.hpp"

namespace fbr::config::detail {

/// True when an error about `key` (a key path or variable) is already in `errors`.
bool reported(const std::vector<std::string>& errors, std::string_view key);

class Reader {
 public:
  explicit Reader(std::vector<std::string>& errors) : errors_(errors) {}

  void fail(const std::string& path, std::string_view message);

  /// Whether `key` already has an error, so a rule over several keys need not add another.
  [[nodiscard]] bool reported(std::string_view key) const { return detail::reported(errors_, key); }

  [[nodiscard]] std::size_t error_count() const { return errors_.size(); }

  void expected(const std::string& path, std::string_view what, const Value& got);

  /// Walks the members of an object in document order. `on_key` returns false for a key it does
  /// not know; that, and a key given twice, are errors.
  bool members(
      const Value& object, const std::string& path,
      const std::function<bool(std::string_view, const Value&, const std::string&)>& on_key);

  bool string(const Value& v, const std::string& path, std::string& out);
  /// A non-empty string, or null for "not set".
  bool optional_string(const Value& v, const std::string& path, std::string& out);
  bool optional_string(const Value& v, const std::string& path, std::optional<std::string>& out);
  bool choice(const Value& v, const std::string& path, std::string& out,
              std::span<const std::string_view> choices);
  bool boolean(const Value& v, const std::string& path, std::optional<bool>& out);

  /// An integer in [min, max], into any integer type that holds that range.
  template <class T>
  bool integer(const Value& v, const std::string& path, T& out, std::uint64_t min,
               std::uint64_t max) {
    std::uint64_t value = 0;
    if (!unsigned_integer(v, path, value, min, max)) return false;
    out = static_cast<T>(value);
    return true;
  }

  /// An array of strings. `argv`: non-empty, with a non-empty first element (a program);
  /// otherwise: every element a non-empty string. `allow_empty`: [] is accepted.
  bool strings(const Value& v, const std::string& path, std::vector<std::string>& out,
               bool allow_empty, bool argv = false);
  bool env_name(const Value& v, const std::string& path, std::string& out);

 private:
  bool unsigned_integer(const Value& v, const std::string& path, std::uint64_t& out,
                        std::uint64_t min, std::uint64_t max);

  std::vector<std::string>& errors_;
};

/// What an integer in [min, max] is called in messages ("a positive integer", "an integer from
/// 1 to 5").
std::string integer_expected(std::uint64_t min, std::uint64_t max);

}  // namespace fbr::config::detail
