// Reading JSON values into the config (see reader.hpp).
#include "config/reader.hpp"

#include <algorithm>
#include <set>
#include <utility>

namespace fbr::config::detail {

bool reported(const std::vector<std::string>& errors, std::string_view key) {
  return std::any_of(errors.begin(), errors.end(), [&](const std::string& e) {
    return e.starts_with(key) && e.size() > key.size() &&
           (e[key.size()] == ':' || e[key.size()] == '.' || e[key.size()] == '[');
  });
}

std::string integer_expected(std::uint64_t min, std::uint64_t max) {
  if (min == 1 && max >= kMaxI32) return std::string(kPositiveInteger);
  return "an integer from " + std::to_string(min) + " to " + std::to_string(max);
}

void Reader::fail(const std::string& path, std::string_view message) {
  errors_.push_back((path.empty() ? std::string("(root)") : path) + ": " + std::string(message));
}

void Reader::expected(const std::string& path, std::string_view what, const Value& got) {
  fail(path, "must be " + std::string(what) + ", got " + describe(got));
}

bool Reader::members(
    const Value& object, const std::string& path,
    const std::function<bool(std::string_view, const Value&, const std::string&)>& on_key) {
  if (!object.IsObject()) {
    expected(path, "an object", object);
    return false;
  }
  std::set<std::string_view> seen;
  for (const auto& member : object.GetObject()) {
    const std::string_view key = view(member.name);
    const std::string key_path = child(path, key);
    if (!seen.insert(key).second) {
      fail(key_path, "duplicate key");
      continue;
    }
    if (!on_key(key, member.value, key_path)) fail(key_path, "unknown key");
  }
  return true;
}

bool Reader::string(const Value& v, const std::string& path, std::string& out) {
  if (!v.IsString() || v.GetStringLength() == 0 || has_control(view(v))) {
    expected(path, "a non-empty string without control characters", v);
    return false;
  }
  out = std::string(view(v));
  return true;
}

bool Reader::optional_string(const Value& v, const std::string& path, std::string& out) {
  if (v.IsNull()) {
    out.clear();
    return true;
  }
  if (!v.IsString() || v.GetStringLength() == 0 || has_control(view(v))) {
    expected(path, "a non-empty string (or null for none)", v);
    return false;
  }
  out = std::string(view(v));
  return true;
}

bool Reader::optional_string(const Value& v, const std::string& path,
                             std::optional<std::string>& out) {
  std::string text;
  if (!optional_string(v, path, text)) return false;
  out = text.empty() ? std::nullopt : std::optional<std::string>(text);
  return true;
}

bool Reader::choice(const Value& v, const std::string& path, std::string& out,
                    std::span<const std::string_view> choices) {
  if (!v.IsString() || !one_of(view(v), choices)) {
    expected(path, choices_text(choices), v);
    return false;
  }
  out = std::string(view(v));
  return true;
}

bool Reader::boolean(const Value& v, const std::string& path, std::optional<bool>& out) {
  if (v.IsNull()) {
    out.reset();
    return true;
  }
  if (!v.IsBool()) {
    expected(path, "true, false (or null for either)", v);
    return false;
  }
  out = v.GetBool();
  return true;
}

bool Reader::unsigned_integer(const Value& v, const std::string& path, std::uint64_t& out,
                              std::uint64_t min, std::uint64_t max) {
  std::string what = integer_expected(min, max);
  if (min == 1 && max >= kMaxI32 && max < kMaxU64 && v.IsUint64() && v.GetUint64() > max) {
    what += " no larger than " + std::to_string(max);
  }
  if (!v.IsUint64() || v.GetUint64() < min || v.GetUint64() > max) {
    expected(path, what, v);
    return false;
  }
  out = v.GetUint64();
  return true;
}

bool Reader::strings(const Value& v, const std::string& path, std::vector<std::string>& out,
                     bool allow_empty, bool argv) {
  const char* what = argv          ? "a non-empty array of strings (program, then arguments)"
                     : allow_empty ? "an array of non-empty strings"
                                   : "a non-empty array of non-empty strings";
  if (!v.IsArray() || (!allow_empty && v.Empty())) {
    expected(path, what, v);
    return false;
  }
  bool ok = true;
  std::vector<std::string> items;
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const Value& item = v[i];
    const bool may_be_empty = argv && i > 0;
    if (!item.IsString() || (!may_be_empty && item.GetStringLength() == 0) ||
        has_control(view(item))) {
      expected(element(path, i),
               may_be_empty ? "a string" : "a non-empty string without control characters", item);
      ok = false;
      continue;
    }
    items.emplace_back(view(item));
  }
  if (ok) out = std::move(items);
  return ok;
}

bool Reader::env_name(const Value& v, const std::string& path, std::string& out) {
  if (!v.IsString() || !is_env_name(view(v))) {
    expected(path, kEnvNameExpected, v);
    return false;
  }
  out = std::string(view(v));
  return true;
}

}  // namespace fbr::config::detail
