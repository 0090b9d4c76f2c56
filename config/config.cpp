// Loads the configuration: JSON (comments and trailing commas allowed) → Config, then FBR_*
// environment overrides, then the checks that span several keys. Every error found is collected,
// each naming its key path, and no message ever echoes a secret.
#include "config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

#include "core/url.hpp"

extern char** environ;

namespace fbr::config {
namespace {

using Value = rapidjson::Value;

constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug",    "info", "warn",
                                                        "error", "critical", "off"};
constexpr std::array<std::string_view, 5> kHandlerTypes = {"file", "exec", "http", "download",
                                                           "nats"};
constexpr std::array<std::string_view, 3> kReservedPaths = {"/healthz", "/readyz", "/metrics"};
constexpr std::string_view kRedacted = "<redacted>";
constexpr std::uint64_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kMaxI32 = std::numeric_limits<std::int32_t>::max();
constexpr std::uint64_t kMaxI64 = std::numeric_limits<std::int64_t>::max();
constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kMinUnauthenticatedBody = 512;
constexpr std::uint64_t kMaxUnauthenticatedBody = 1 << 20;

constexpr std::string_view kListenExpected =
    R"("host:port" (IPv6 as "[::]:8080") with a port from 0 to 65535)";
constexpr std::string_view kPathExpected =
    R"(a URL path starting with "/" (no query, fragment or whitespace))";
constexpr std::string_view kPositiveInteger = "a positive integer";
// JetStream's duplicate window: at least a minute, at most 30 days (the server keeps every
// Nats-Msg-Id of the window in memory).
constexpr std::uint64_t kMinDuplicateWindowS = 60;
constexpr std::uint64_t kMaxDuplicateWindowS = 30ULL * 24 * 3600;
constexpr std::string_view kStreamExpected =
    "a JetStream stream name (no whitespace, '.', '*', '>', '/' or '\\')";
constexpr std::string_view kSubjectExpected =
    "a NATS subject without wildcards (tokens separated by '.', no whitespace, '*' or '>')";

// ---------------------------------------------------------------------------------------------
// Small string helpers

bool is_control(char c) {
  return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), is_control);
}

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& choices) {
  return std::find(choices.begin(), choices.end(), s) != choices.end();
}

template <class Range>
std::string join(const Range& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

template <std::size_t N>
std::string choices_text(const std::array<std::string_view, N>& choices) {
  std::string out = "one of ";
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += ", ";
    out += '"';
    out += choices[i];
    out += '"';
  }
  return out;
}

/// The string as a JSON literal for a message, cut short when long.
std::string json_quoted(std::string_view s) {
  constexpr std::size_t kMax = 80;
  const bool cut = s.size() > kMax;
  if (cut) s = s.substr(0, kMax);
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  std::string out = buffer.GetString();
  if (cut) out.insert(out.size() - 1, "...");
  return out;
}

/// What a JSON value is, for "got ..." in messages: scalars as written, containers by kind.
std::string describe(const Value& v) {
  if (v.IsString()) return json_quoted(std::string_view(v.GetString(), v.GetStringLength()));
  if (v.IsArray()) return "an array";
  if (v.IsObject()) return "an object";
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return buffer.GetString();
}

/// The kind of a value only: used where the value itself may be a secret.
std::string describe_kind(const Value& v) {
  if (v.IsString()) return v.GetStringLength() == 0 ? "an empty string" : "a string";
  if (v.IsNumber()) return "a number";
  if (v.IsBool()) return "a boolean";
  if (v.IsNull()) return "null";
  if (v.IsArray()) return "an array";
  return "an object";
}

std::string_view view(const Value& v) {
  return {v.GetString(), v.GetStringLength()};
}

std::string child(const std::string& path, std::string_view key) {
  std::string out = path;
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

std::string element(const std::string& path, std::size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

bool is_env_name(std::string_view s) {
  if (s.empty() || (s.front() >= '0' && s.front() <= '9')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

bool is_handler_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return is_alnum(c) || c == '_' || c == '.' || c == '-';
  });
}

bool is_stream_name(std::string_view s) {
  return !s.empty() && std::none_of(s.begin(), s.end(), [](char c) {
    return is_control(c) || is_space(c) || c == '.' || c == '*' || c == '>' || c == '/' ||
           c == '\\';
  });
}

/// A literal subject: non-empty tokens separated by '.', no wildcards or whitespace.
bool is_literal_subject(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.' || s.find("..") != std::string_view::npos)
    return false;
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return is_control(c) || is_space(c) || c == '*' || c == '>'; });
}

bool is_header_name(std::string_view s) {
  constexpr std::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return is_alnum(c) || kTokenPunctuation.find(c) != std::string_view::npos;
  });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

/// An absolute http:// or https:// URL with a host, and no whitespace or control characters.
bool is_http_url(std::string_view url) {
  const std::string head = lower(url.substr(0, 8));
  std::string_view rest;
  if (head.starts_with("http://")) {
    rest = url.substr(7);
  } else if (head.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return false;
  }
  if (std::any_of(url.begin(), url.end(), [](char c) { return is_control(c) || c == ' '; })) {
    return false;
  }
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  const std::string_view host = authority.substr(
      0, authority.starts_with('[') ? authority.find(']') + 1 : authority.find(':'));
  return !host.empty() && host != "[]";
}

/// An allowed_hosts / token_hosts entry: a host name (letters, digits, '-', '_', dots between
/// non-empty labels, an optional trailing dot), "*." and a name, or an IPv4 or IPv6 literal (with
/// or without brackets).
bool is_host_pattern(std::string_view s) {
  if (s.starts_with('[') && s.ends_with(']')) s = s.substr(1, s.size() - 2);
  if (s.find(':') != std::string_view::npos) {
    unsigned char address[16];
    return ::inet_pton(AF_INET6, std::string(s).c_str(), address) == 1;
  }
  if (s.starts_with("*.")) s.remove_prefix(2);
  if (s.ends_with('.')) s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  std::size_t label = 0;
  for (const char c : s) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (is_alnum(c) || c == '-' || c == '_') {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return label > 0;
}

std::optional<std::uint64_t> parse_decimal(std::string_view s) {
  std::uint64_t value = 0;
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<Listen> parse_listen(std::string_view s) {
  std::string_view host;
  std::string_view port;
  if (s.starts_with('[')) {
    const auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return std::nullopt;
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    const bool ipv6_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return is_alnum(c) || c == ':' || c == '.' || c == '%' || c == '_' || c == '-';
    });
    if (host.find(':') == std::string_view::npos || !ipv6_chars) return std::nullopt;
  } else {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    const bool host_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return is_alnum(c) || c == '.' || c == '-' || c == '_';
    });
    if (!host_chars) return std::nullopt;
  }
  const auto number = port.size() <= 5 ? parse_decimal(port) : std::nullopt;
  if (host.empty() || !number || *number > 65535) return std::nullopt;
  return Listen{std::string(host), static_cast<std::uint16_t>(*number)};
}

std::string format_listen(const Listen& listen) {
  const bool ipv6 = listen.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + listen.host + "]" : listen.host) + ":" + std::to_string(listen.port);
}

bool is_valid_path(std::string_view s) {
  return s.starts_with('/') && std::none_of(s.begin(), s.end(), [](char c) {
           return is_control(c) || c == ' ' || c == '?' || c == '#';
         });
}

/// Why `path` cannot be the webhook path, or empty when it can.
std::string path_problem(std::string_view path) {
  if (one_of(path, kReservedPaths)) {
    return "must not be a built-in route (" + join(kReservedPaths, ", ") + ")";
  }
  return "";
}

/// Why `token` cannot be a verification token (never quoting it), or empty when it can.
std::string token_problem(std::string_view token) {
  if (token.empty()) return "must not be empty";
  if (has_control(token)) return "must not contain control characters";
  if (trim(token).size() != token.size()) return "must not have leading or trailing whitespace";
  return "";
}

// ---------------------------------------------------------------------------------------------
// Reading JSON values into the config, recording every error.

/// True when an error about `key` (a key path or variable) is already in `errors`.
bool reported(const std::vector<std::string>& errors, std::string_view key) {
  return std::any_of(errors.begin(), errors.end(), [&](const std::string& e) {
    return e.starts_with(key) && e.size() > key.size() &&
           (e[key.size()] == ':' || e[key.size()] == '.' || e[key.size()] == '[');
  });
}

class Reader {
 public:
  explicit Reader(std::vector<std::string>& errors) : errors_(errors) {}

  void fail(const std::string& path, std::string_view message) {
    errors_.push_back((path.empty() ? std::string("(root)") : path) + ": " + std::string(message));
  }

  /// Whether `key` already has an error, so a rule over several keys need not add another.
  [[nodiscard]] bool reported(std::string_view key) const { return config::reported(errors_, key); }

  void expected(const std::string& path, std::string_view what, const Value& got) {
    fail(path, "must be " + std::string(what) + ", got " + describe(got));
  }

  /// Walks the members of an object in document order. `on_key` returns false for a key it does
  /// not know; that, and a key given twice, are errors.
  bool members(
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

  bool string(const Value& v, const std::string& path, std::string& out) {
    if (!v.IsString() || v.GetStringLength() == 0 || has_control(view(v))) {
      expected(path, "a non-empty string without control characters", v);
      return false;
    }
    out = std::string(view(v));
    return true;
  }

  /// A non-empty string, or null for "not set".
  bool optional_string(const Value& v, const std::string& path, std::string& out) {
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

  bool optional_string(const Value& v, const std::string& path, std::optional<std::string>& out) {
    std::string text;
    if (!optional_string(v, path, text)) return false;
    out = text.empty() ? std::nullopt : std::optional<std::string>(text);
    return true;
  }

  template <std::size_t N>
  bool choice(const Value& v, const std::string& path, std::string& out,
              const std::array<std::string_view, N>& choices) {
    if (!v.IsString() || !one_of(view(v), choices)) {
      expected(path, choices_text(choices), v);
      return false;
    }
    out = std::string(view(v));
    return true;
  }

  bool boolean(const Value& v, const std::string& path, std::optional<bool>& out) {
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

  /// An integer in [min, max], into any integer type that holds that range.
  template <class T>
  bool integer(const Value& v, const std::string& path, T& out, std::uint64_t min,
               std::uint64_t max) {
    std::string what;
    if (min == 1 && max >= kMaxI32) {
      what = std::string(kPositiveInteger);
      if (max < kMaxU64 && v.IsUint64() && v.GetUint64() > max) {
        what += " no larger than " + std::to_string(max);
      }
    } else {
      what = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    }
    if (!v.IsUint64() || v.GetUint64() < min || v.GetUint64() > max) {
      expected(path, what, v);
      return false;
    }
    out = static_cast<T>(v.GetUint64());
    return true;
  }

  /// An array of strings. `argv`: non-empty, with a non-empty first element (a program);
  /// otherwise: every element a non-empty string. `allow_empty`: [] is accepted.
  bool strings(const Value& v, const std::string& path, std::vector<std::string>& out,
               bool allow_empty, bool argv = false) {
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

  bool env_name(const Value& v, const std::string& path, std::string& out) {
    if (!v.IsString() || !is_env_name(view(v))) {
      expected(path, "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", v);
      return false;
    }
    out = std::string(view(v));
    return true;
  }

 private:
  std::vector<std::string>& errors_;
};

// ---------------------------------------------------------------------------------------------
// Sections

void read_retry(Reader& r, const Value& v, const std::string& path, core::RetryPolicy& retry) {
  r.members(v, path, [&](std::string_view key, const Value& value, const std::string& p) {
    if (key == "max_attempts") {
      r.integer(value, p, retry.max_attempts, 1, kMaxI32);
    } else if (key == "initial_backoff_ms") {
      r.integer(value, p, retry.initial_backoff_ms, 1, kMaxI64);
    } else if (key == "max_backoff_ms") {
      r.integer(value, p, retry.max_backoff_ms, 1, kMaxI64);
    } else {
      return false;
    }
    return true;
  });
}

/// `inherited`: the value did not come from this object but from the top-level retry.
void check_retry(Reader& r, const std::string& path, const core::RetryPolicy& retry,
                 bool inherited = false) {
  if (retry.max_backoff_ms < retry.initial_backoff_ms) {
    r.fail(path + ".max_backoff_ms",
           "must be at least initial_backoff_ms (" + std::to_string(retry.initial_backoff_ms) +
               "), got " + std::to_string(retry.max_backoff_ms) +
               (inherited ? " (inherited from retry.max_backoff_ms)" : ""));
  }
}

void read_when(Reader& r, const Value& v, const std::string& path, core::WhenFilter& when) {
  r.members(v, path, [&](std::string_view key, const Value& value, const std::string& p) {
    if (key == "status") {
      when.status.clear();
      if (value.IsNull()) return true;
      if (!value.IsArray() || value.Empty()) {
        r.expected(p, "a non-empty array of 200 and/or 202 (or null for any)", value);
        return true;
      }
      for (rapidjson::SizeType i = 0; i < value.Size(); ++i) {
        const Value& item = value[i];
        if (item.IsInt() && (item.GetInt() == 200 || item.GetInt() == 202)) {
          when.status.push_back(item.GetInt());
        } else {
          r.expected(element(p, i), "200 or 202", item);
        }
      }
    } else if (key == "test") {
      r.boolean(value, p, when.test);
    } else if (key == "resource_types") {
      when.resource_types.clear();
      if (!value.IsNull()) r.strings(value, p, when.resource_types, false);
    } else if (key == "source_id") {
      r.optional_string(value, p, when.source_id);
    } else if (key == "destination_id") {
      r.optional_string(value, p, when.destination_id);
    } else {
      return false;
    }
    return true;
  });
}

/// A literal or {"env": "NAME"} at `p`; false (with the error reported) when it is neither. A
/// literal may be a secret (an API key): messages name its kind, never its text.
bool read_literal_or_env(Reader& r, const Value& value, const std::string& p, LiteralOrEnv& out,
                         bool line_breaks_allowed) {
  if (value.IsString()) {
    const std::string_view text = view(value);
    const bool bad = std::any_of(text.begin(), text.end(), [&](char c) {
      return c == '\0' || (!line_breaks_allowed && (c == '\r' || c == '\n'));
    });
    if (bad) {
      r.fail(p, line_breaks_allowed ? "must not contain NUL characters"
                                    : "must not contain line breaks or NUL characters");
      return false;
    }
    out.literal = std::string(text);
    return true;
  }
  if (value.IsObject()) {
    bool has_env = false;
    r.members(value, p, [&](std::string_view key, const Value& env, const std::string& ep) {
      if (key != "env") return false;
      has_env = r.env_name(env, ep, out.env);
      return true;
    });
    if (!has_env && !value.HasMember("env")) r.fail(p + ".env", "required");
    return !out.env.empty();
  }
  r.fail(p, R"(must be a string or {"env": "NAME"}, got )" + describe_kind(value));
  return false;
}

void read_headers(Reader& r, const Value& v, const std::string& path,
                  std::map<std::string, HeaderValue>& headers) {
  std::map<std::string, std::string> by_lower_name;
  r.members(v, path, [&](std::string_view name, const Value& value, const std::string& p) {
    if (!is_header_name(name)) {
      r.fail(p, "not a valid HTTP header name");
      return true;
    }
    if (const auto [it, fresh] = by_lower_name.emplace(lower(name), std::string(name)); !fresh) {
      r.fail(p, "same header as " + child(path, it->second) + " (names are case-insensitive)");
      return true;
    }
    HeaderValue header;
    if (read_literal_or_env(r, value, p, header, false)) headers[std::string(name)] = header;
    return true;
  });
}

/// The variables a handler gives its children (exec `env`, download `token_command_env`).
void read_child_environment(Reader& r, const Value& v, const std::string& path,
                            ChildEnvironment& env) {
  r.members(v, path, [&](std::string_view name, const Value& value, const std::string& p) {
    if (!is_env_name(name)) {
      r.fail(p, "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
      return true;
    }
    LiteralOrEnv entry;
    if (read_literal_or_env(r, value, p, entry, true)) env[std::string(name)] = entry;
    return true;
  });
}

/// allowed_hosts / token_hosts: an array (possibly empty) of host patterns.
bool read_host_patterns(Reader& r, const Value& v, const std::string& path,
                        std::vector<std::string>& out) {
  std::vector<std::string> hosts;
  if (!r.strings(v, path, hosts, true)) return false;
  bool ok = true;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (!is_host_pattern(hosts[i])) {
      r.fail(element(path, i), "must be a host name, \"*.\" and a name, or an IP address, got " +
                                   json_quoted(hosts[i]));
      ok = false;
    }
  }
  if (ok) out = std::move(hosts);
  return ok;
}

// Keys that belong to one handler type; a key of another type is an unknown key.
bool is_type_key(std::string_view type, std::string_view key) {
  static const std::map<std::string_view, std::set<std::string_view>> kKeys = {
      {"file", {"dir", "path"}},
      {"exec", {"command", "timeout_ms", "env"}},
      {"http", {"url", "headers", "timeout_ms"}},
      {"download",
       {"dir",
        "parallel",
        "token_env",
        "token_file",
        "token_command",
        "token_command_env",
        "store",
        "connect_timeout_ms",
        "idle_timeout_ms",
        "min_speed_bytes_per_s",
        "min_speed_window_s",
        "max_files",
        "transfer_attempts",
        "max_retry_wait_ms",
        "allowed_hosts",
        "allow_private_addresses",
        "token_hosts",
        "max_file_bytes",
        "max_event_bytes",
        "max_decompression_ratio",
        "min_free_bytes"}},
      {"nats", {"servers", "subject", "stream", "credentials_file"}},
  };
  if (!type.empty()) {
    const auto it = kKeys.find(type);
    return it != kKeys.end() && it->second.contains(key);
  }
  return std::any_of(kKeys.begin(), kKeys.end(),
                     [&](const auto& entry) { return entry.second.contains(key); });
}

void read_type_key(Reader& r, std::string_view key, const Value& v, const std::string& p,
                   Handler& handler) {
  if (auto* file = std::get_if<FileHandler>(&handler.settings)) {
    r.optional_string(v, p, key == "dir" ? file->dir : file->path);
  } else if (auto* exec = std::get_if<ExecHandler>(&handler.settings)) {
    if (key == "command") r.strings(v, p, exec->command, false, true);
    if (key == "timeout_ms") r.integer(v, p, exec->timeout_ms, 1, kMaxU32);
    if (key == "env") read_child_environment(r, v, p, exec->env);
  } else if (auto* http = std::get_if<HttpHandler>(&handler.settings)) {
    if (key == "url") {
      if (!v.IsString() || !is_http_url(view(v))) {
        r.expected(p, "an absolute http:// or https:// URL", v);
      } else {
        http->url = std::string(view(v));
      }
    }
    if (key == "headers") read_headers(r, v, p, http->headers);
    if (key == "timeout_ms") r.integer(v, p, http->timeout_ms, 1, kMaxU32);
  } else if (auto* download = std::get_if<DownloadHandler>(&handler.settings)) {
    if (key == "dir") r.string(v, p, download->dir);
    if (key == "parallel") r.integer(v, p, download->parallel, 1, 64);
    if (key == "token_env" && !v.IsNull()) r.env_name(v, p, download->token_env);
    if (key == "token_file") r.optional_string(v, p, download->token_file);
    if (key == "token_command" && !v.IsNull())
      r.strings(v, p, download->token_command, false, true);
    if (key == "token_command_env") read_child_environment(r, v, p, download->token_command_env);
    if (key == "store") {
      static constexpr std::array<std::string_view, 2> kStores = {"ndjson", "gzip"};
      r.choice(v, p, download->store, kStores);
    }
    if (key == "connect_timeout_ms") r.integer(v, p, download->connect_timeout_ms, 1, kMaxU32);
    if (key == "idle_timeout_ms") r.integer(v, p, download->idle_timeout_ms, 1, kMaxU32);
    if (key == "min_speed_bytes_per_s")
      r.integer(v, p, download->min_speed_bytes_per_s, 1, kMaxU32);
    if (key == "min_speed_window_s") r.integer(v, p, download->min_speed_window_s, 1, 86'400);
    if (key == "max_files") r.integer(v, p, download->max_files, 1, 1'000'000);
    if (key == "transfer_attempts") r.integer(v, p, download->transfer_attempts, 1, 100);
    if (key == "max_retry_wait_ms") r.integer(v, p, download->max_retry_wait_ms, 0, kMaxU32);
    if (key == "allowed_hosts") read_host_patterns(r, v, p, download->egress.allowed_hosts);
    if (key == "allow_private_addresses") {
      std::optional<bool> allow;
      if (!v.IsBool()) {
        r.expected(p, "true or false", v);
      } else if (r.boolean(v, p, allow)) {
        download->egress.allow_private_addresses = allow.value_or(false);
      }
    }
    if (key == "token_hosts" && !v.IsNull()) {
      std::vector<std::string> hosts;
      if (read_host_patterns(r, v, p, hosts)) download->egress.token_hosts = std::move(hosts);
    }
    if (key == "max_file_bytes") r.integer(v, p, download->max_file_bytes, 1, kMaxI64);
    if (key == "max_event_bytes") r.integer(v, p, download->max_event_bytes, 1, kMaxI64);
    if (key == "max_decompression_ratio")
      r.integer(v, p, download->max_decompression_ratio, 1, 1'000'000);
    if (key == "min_free_bytes" && !v.IsNull()) {
      std::uint64_t bytes = 0;
      if (r.integer(v, p, bytes, 0, kMaxI64)) download->min_free_bytes = bytes;
    }
  } else if (auto* nats = std::get_if<NatsHandler>(&handler.settings)) {
    if (key == "servers") r.strings(v, p, nats->servers, false);
    if (key == "subject") r.string(v, p, nats->subject);
    if (key == "stream") r.optional_string(v, p, nats->stream);
    if (key == "credentials_file") r.optional_string(v, p, nats->credentials_file);
  }
}

void check_type_keys(Reader& r, const std::string& path, const Value& v, const Handler& handler) {
  const auto require = [&](const char* key) {
    if (!v.HasMember(key)) r.fail(path + "." + key, "required");
  };
  if (const auto* file = std::get_if<FileHandler>(&handler.settings)) {
    if (file->dir.empty() == file->path.empty() && !r.reported(path + ".dir") &&
        !r.reported(path + ".path")) {
      r.fail(path,
             "a file handler needs exactly one of dir (a file per event) or path (one "
             "NDJSON file)");
    }
  } else if (std::holds_alternative<ExecHandler>(handler.settings)) {
    require("command");
  } else if (std::holds_alternative<HttpHandler>(handler.settings)) {
    require("url");
  } else if (const auto* download = std::get_if<DownloadHandler>(&handler.settings)) {
    require("dir");
    const int tokens = int{!download->token_env.empty()} + int{!download->token_file.empty()} +
                       int{!download->token_command.empty()};
    if (tokens > 1) r.fail(path, "at most one of token_env, token_file, token_command may be set");
  } else if (std::holds_alternative<NatsHandler>(handler.settings)) {
    require("servers");
    require("subject");
  }
}

Handler read_handler(Reader& r, const Value& v, const std::string& path,
                     const core::RetryPolicy& defaults) {
  Handler handler;
  if (!v.IsObject()) {
    r.expected(path, "an object", v);
    return handler;
  }
  // The type decides which other keys are known, so it is looked at first.
  std::string type;
  if (const auto it = v.FindMember("type");
      it != v.MemberEnd() && it->value.IsString() && one_of(view(it->value), kHandlerTypes)) {
    type = std::string(view(it->value));
  }
  if (type == "exec") handler.settings = ExecHandler{};
  if (type == "http") handler.settings = HttpHandler{};
  if (type == "download") handler.settings = DownloadHandler{};
  if (type == "nats") handler.settings = NatsHandler{};

  r.members(v, path, [&](std::string_view key, const Value& value, const std::string& p) {
    if (key == "name") {
      if (!value.IsString() || !is_handler_name(view(value))) {
        r.expected(p, "a non-empty name of letters, digits, '_', '.' and '-'", value);
      } else {
        handler.name = std::string(view(value));
      }
    } else if (key == "type") {
      r.choice(value, p, handler.type, kHandlerTypes);
    } else if (key == "when") {
      read_when(r, value, p, handler.when);
    } else if (key == "retry") {
      core::RetryPolicy retry = defaults;
      read_retry(r, value, p, retry);
      check_retry(r, p, retry, value.IsObject() && !value.HasMember("max_backoff_ms"));
      handler.retry = retry;
    } else if (key == "concurrency") {
      r.integer(value, p, handler.concurrency, 1, 1024);
    } else if (is_type_key(type, key)) {
      read_type_key(r, key, value, p, handler);
    } else {
      // With a missing or bad type (already an error), a key of some type is not reported.
      return type.empty() && is_type_key("", key);
    }
    return true;
  });

  if (!v.HasMember("name")) r.fail(path + ".name", "required");
  if (!v.HasMember("type")) {
    r.fail(path + ".type", "required, " + choices_text(kHandlerTypes));
  }
  if (!type.empty()) check_type_keys(r, path, v, handler);
  return handler;
}

void read_handlers(Reader& r, const Value& v, const std::string& path, Config& config) {
  if (!v.IsArray()) {
    r.expected(path, "an array of handler objects", v);
    return;
  }
  std::map<std::string, std::string> seen;  // name → path of its first use
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const std::string p = element(path, i);
    Handler handler = read_handler(r, v[i], p, config.retry);
    if (!handler.name.empty()) {
      if (const auto [it, fresh] = seen.emplace(handler.name, p); !fresh) {
        r.fail(p + ".name", "duplicate handler name " + json_quoted(handler.name) + " (also " +
                                it->second + ")");
      }
    }
    config.handlers.push_back(std::move(handler));
  }
  // One handler that hangs (a download dribbling bytes) must leave a worker for the others; a
  // handler alone may use them all.
  const int fallback = config.handlers.size() > 1 ? std::max(1, config.dispatch_concurrency - 1)
                                                  : config.dispatch_concurrency;
  for (std::size_t i = 0; i < config.handlers.size(); ++i) {
    Handler& handler = config.handlers[i];
    if (handler.concurrency == 0) {
      handler.concurrency = fallback;
    } else if (handler.concurrency > config.dispatch_concurrency) {
      r.fail(element(path, i) + ".concurrency",
             std::to_string(handler.concurrency) + " is more than dispatch.concurrency (" +
                 std::to_string(config.dispatch_concurrency) +
                 "): a handler cannot run more deliveries than there are workers");
    }
  }
}

void read_journal(Reader& r, const Value& v, const std::string& path, Journal& journal) {
  r.members(v, path, [&](std::string_view key, const Value& value, const std::string& p) {
    if (key == "backend") {
      static constexpr std::array<std::string_view, 2> kBackends = {"sqlite", "nats"};
      r.choice(value, p, journal.backend, kBackends);
    } else if (key == "nats") {
      NatsJournal& nats = journal.nats;
      r.members(value, p, [&](std::string_view k, const Value& val, const std::string& np) {
        if (k == "servers") {
          r.strings(val, np, nats.servers, true);
        } else if (k == "stream") {
          if (!val.IsString() || !is_stream_name(view(val))) {
            r.expected(np, kStreamExpected, val);
          } else {
            nats.stream = std::string(view(val));
          }
        } else if (k == "subject") {
          if (!val.IsString() || !is_literal_subject(view(val))) {
            r.expected(np, kSubjectExpected, val);
          } else {
            nats.subject = std::string(view(val));
          }
        } else if (k == "replicas") {
          r.integer(val, np, nats.replicas, 1, 5);
        } else if (k == "credentials_file") {
          r.optional_string(val, np, nats.credentials_file);
        } else if (k == "duplicate_window_s") {
          r.integer(val, np, nats.duplicate_window_s, kMinDuplicateWindowS, kMaxDuplicateWindowS);
        } else if (k == "token_env") {
          if (val.IsNull()) {
            nats.token_env.clear();
          } else {
            r.env_name(val, np, nats.token_env);
          }
        } else {
          return false;
        }
        return true;
      });
    } else {
      return false;
    }
    return true;
  });
}

void read_limits(Reader& r, const Value& v, const std::string& path, Limits& limits) {
  r.members(v, path, [&](std::string_view key, const Value& value, const std::string& p) {
    std::uint32_t* target = key == "max_header_bytes"    ? &limits.max_header_bytes
                            : key == "header_timeout_ms" ? &limits.header_timeout_ms
                            : key == "body_timeout_ms"   ? &limits.body_timeout_ms
                            : key == "idle_timeout_ms"   ? &limits.idle_timeout_ms
                            : key == "max_connections"   ? &limits.max_connections
                                                         : nullptr;
    if (key == "max_unauthenticated_body_bytes") {
      // At least a challenge's few hundred bytes; at most what an unauthenticated peer may make
      // the service hold per connection.
      r.integer(value, p, limits.max_unauthenticated_body_bytes, kMinUnauthenticatedBody,
                kMaxUnauthenticatedBody);
      return true;
    }
    if (target == nullptr) return false;
    r.integer(value, p, *target, 1, kMaxU32);
    return true;
  });
}

void read_top(Reader& r, const Value& root, Config& config) {
  const Value* handlers = nullptr;
  r.members(root, "", [&](std::string_view key, const Value& v, const std::string& p) {
    if (key == "listen") {
      const auto listen = v.IsString() ? parse_listen(view(v)) : std::nullopt;
      if (listen) {
        config.listen = *listen;
      } else {
        r.expected(p, kListenExpected, v);
      }
    } else if (key == "path") {
      if (!v.IsString() || !is_valid_path(view(v))) {
        r.expected(p, kPathExpected, v);
      } else if (const std::string problem = path_problem(view(v)); !problem.empty()) {
        r.fail(p, problem + ", got " + describe(v));
      } else {
        config.path = std::string(view(v));
      }
    } else if (key == "verification_tokens") {
      // Tokens are secrets: messages describe them, never quote them.
      if (!v.IsArray()) {
        r.fail(p, "must be an array of token strings, got " + describe_kind(v));
        return true;
      }
      config.verification_tokens.clear();
      for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
        const Value& token = v[i];
        if (!token.IsString()) {
          r.fail(element(p, i), "must be a non-empty string, got " + describe_kind(token));
        } else if (const std::string problem = token_problem(view(token)); !problem.empty()) {
          r.fail(element(p, i), problem);
        } else {
          config.verification_tokens.emplace_back(view(token));
        }
      }
    } else if (key == "data_dir") {
      std::string dir;
      if (r.string(v, p, dir)) config.data_dir = dir;
    } else if (key == "max_body_bytes") {
      r.integer(v, p, config.max_body_bytes, 1, kMaxU64);
    } else if (key == "invalid_payloads") {
      static constexpr std::array<std::string_view, 2> kModes = {"reject", "quarantine"};
      std::string mode;
      if (r.choice(v, p, mode, kModes)) {
        config.invalid_payloads =
            mode == "reject" ? InvalidPayloads::kReject : InvalidPayloads::kQuarantine;
      }
    } else if (key == "tls") {
      r.members(v, p, [&](std::string_view k, const Value& val, const std::string& tp) {
        if (k == "cert_file") {
          r.optional_string(val, tp, config.tls.cert_file);
        } else if (k == "key_file") {
          r.optional_string(val, tp, config.tls.key_file);
        } else {
          return false;
        }
        return true;
      });
    } else if (key == "log") {
      r.members(v, p, [&](std::string_view k, const Value& val, const std::string& lp) {
        if (k == "level") {
          r.choice(val, lp, config.log.level, kLogLevels);
        } else if (k == "format") {
          static constexpr std::array<std::string_view, 2> kFormats = {"text", "json"};
          std::string format;
          if (r.choice(val, lp, format, kFormats)) {
            config.log.format = format == "json" ? LogFormat::kJson : LogFormat::kText;
          }
        } else {
          return false;
        }
        return true;
      });
    } else if (key == "retry") {
      read_retry(r, v, p, config.retry);
    } else if (key == "journal") {
      read_journal(r, v, p, config.journal);
    } else if (key == "dispatch") {
      r.members(v, p, [&](std::string_view k, const Value& val, const std::string& dp) {
        if (k != "concurrency") return false;
        r.integer(val, dp, config.dispatch_concurrency, 1, 1024);
        return true;
      });
    } else if (key == "limits") {
      read_limits(r, v, p, config.limits);
    } else if (key == "handlers") {
      handlers = &v;  // read last: a handler's retry defaults to the top-level retry
    } else {
      return false;
    }
    return true;
  });
  check_retry(r, "retry", config.retry);
  if (handlers != nullptr) read_handlers(r, *handlers, "handlers", config);
}

// ---------------------------------------------------------------------------------------------
// Environment overrides

void apply_environment(const Environment& env, Config& config, std::vector<std::string>& errors) {
  // An empty value counts as unset, so `FBR_X=${X:-}` in a compose file changes nothing.
  const auto get = [&](const char* name) -> std::optional<std::string> {
    const auto it = env.find(name);
    if (it == env.end() || trim(it->second).empty()) return std::nullopt;
    return std::string(trim(it->second));
  };
  const auto bad = [&](const char* name, std::string_view what, const std::string& got) {
    errors.push_back(std::string(name) + ": must be " + std::string(what) + ", got " +
                     json_quoted(got));
  };
  const auto text = [&](const char* name, std::string& target) {
    if (auto v = get(name)) {
      if (has_control(*v)) {
        bad(name, "a value without control characters", *v);
      } else {
        target = *v;
      }
    }
  };

  if (auto v = get("FBR_LISTEN")) {
    if (auto listen = parse_listen(*v)) {
      config.listen = *listen;
    } else {
      bad("FBR_LISTEN", kListenExpected, *v);
    }
  }
  if (auto v = get("FBR_PATH")) {
    if (!is_valid_path(*v)) {
      bad("FBR_PATH", kPathExpected, *v);
    } else if (const std::string problem = path_problem(*v); !problem.empty()) {
      errors.push_back("FBR_PATH: " + problem + ", got " + json_quoted(*v));
    } else {
      config.path = *v;
    }
  }
  if (auto v = get("FBR_VERIFICATION_TOKEN")) {
    std::vector<std::string> tokens;
    bool ok = true;
    std::string_view rest = *v;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view token = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (token.empty()) continue;
      if (const std::string problem = token_problem(token); !problem.empty()) {
        errors.push_back("FBR_VERIFICATION_TOKEN: a token " + problem);
        ok = false;
      } else {
        tokens.emplace_back(token);
      }
    }
    if (ok && !tokens.empty()) config.verification_tokens = std::move(tokens);
  }
  std::string data_dir;
  text("FBR_DATA_DIR", data_dir);
  if (!data_dir.empty()) config.data_dir = data_dir;
  if (auto v = get("FBR_MAX_BODY_BYTES")) {
    const auto bytes = parse_decimal(*v);
    if (!bytes || *bytes == 0) {
      bad("FBR_MAX_BODY_BYTES", kPositiveInteger, *v);
    } else {
      config.max_body_bytes = *bytes;
    }
  }
  if (auto v = get("FBR_INVALID_PAYLOADS")) {
    if (*v == "reject" || *v == "quarantine") {
      config.invalid_payloads =
          *v == "reject" ? InvalidPayloads::kReject : InvalidPayloads::kQuarantine;
    } else {
      bad("FBR_INVALID_PAYLOADS", R"("reject" or "quarantine")", *v);
    }
  }
  text("FBR_TLS_CERT_FILE", config.tls.cert_file);
  text("FBR_TLS_KEY_FILE", config.tls.key_file);
  if (auto v = get("FBR_LOG_LEVEL")) {
    if (one_of(*v, kLogLevels)) {
      config.log.level = *v;
    } else {
      bad("FBR_LOG_LEVEL", choices_text(kLogLevels), *v);
    }
  }
  if (auto v = get("FBR_LOG_FORMAT")) {
    if (*v == "text" || *v == "json") {
      config.log.format = *v == "json" ? LogFormat::kJson : LogFormat::kText;
    } else {
      bad("FBR_LOG_FORMAT", R"("text" or "json")", *v);
    }
  }
  if (auto v = get("FBR_JOURNAL_BACKEND")) {
    if (*v == "sqlite" || *v == "nats") {
      config.journal.backend = *v;
    } else {
      bad("FBR_JOURNAL_BACKEND", R"("sqlite" or "nats")", *v);
    }
  }
  NatsJournal& nats = config.journal.nats;
  if (auto v = get("FBR_JOURNAL_NATS_SERVERS")) {
    // A URL may carry user:password: messages say what is wrong, never quote it.
    std::vector<std::string> servers;
    std::string_view rest = *v;
    bool ok = true;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view server = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (server.empty()) continue;
      if (has_control(server) || server.find(' ') != std::string_view::npos) {
        errors.emplace_back(
            "FBR_JOURNAL_NATS_SERVERS: a server URL must not contain whitespace or control "
            "characters");
        ok = false;
      } else {
        servers.emplace_back(server);
      }
    }
    if (ok && !servers.empty()) nats.servers = std::move(servers);
  }
  if (auto v = get("FBR_JOURNAL_NATS_STREAM")) {
    if (is_stream_name(*v)) {
      nats.stream = *v;
    } else {
      bad("FBR_JOURNAL_NATS_STREAM", kStreamExpected, *v);
    }
  }
  if (auto v = get("FBR_JOURNAL_NATS_SUBJECT")) {
    if (is_literal_subject(*v)) {
      nats.subject = *v;
    } else {
      bad("FBR_JOURNAL_NATS_SUBJECT", kSubjectExpected, *v);
    }
  }
  if (auto v = get("FBR_JOURNAL_NATS_REPLICAS")) {
    const auto n = v->size() <= 2 ? parse_decimal(*v) : std::nullopt;
    if (n && *n >= 1 && *n <= 5) {
      nats.replicas = static_cast<int>(*n);
    } else {
      bad("FBR_JOURNAL_NATS_REPLICAS", "an integer from 1 to 5", *v);
    }
  }
  text("FBR_JOURNAL_NATS_CREDENTIALS_FILE", nats.credentials_file);
  if (auto v = get("FBR_JOURNAL_NATS_DUPLICATE_WINDOW_S")) {
    const auto n = v->size() <= 10 ? parse_decimal(*v) : std::nullopt;
    if (n && *n >= kMinDuplicateWindowS && *n <= kMaxDuplicateWindowS) {
      nats.duplicate_window_s = static_cast<std::uint32_t>(*n);
    } else {
      bad("FBR_JOURNAL_NATS_DUPLICATE_WINDOW_S",
          "an integer from " + std::to_string(kMinDuplicateWindowS) + " to " +
              std::to_string(kMaxDuplicateWindowS),
          *v);
    }
  }
  if (auto v = get("FBR_JOURNAL_NATS_TOKEN_ENV")) {
    if (is_env_name(*v)) {
      nats.token_env = *v;
    } else {
      bad("FBR_JOURNAL_NATS_TOKEN_ENV", "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
          *v);
    }
  }
}

/// Rules that span keys, checked on the effective config (file + environment), unless a
/// narrower error about the same keys already explains the problem.
void check_effective(const Config& config, std::vector<std::string>& errors) {
  if (config.verification_tokens.empty() && !reported(errors, "verification_tokens") &&
      !reported(errors, "FBR_VERIFICATION_TOKEN")) {
    errors.emplace_back(
        "verification_tokens: at least one token is required (set it in the file or "
        "FBR_VERIFICATION_TOKEN)");
  }
  if (config.tls.cert_file.empty() != config.tls.key_file.empty() && !reported(errors, "tls") &&
      !reported(errors, "FBR_TLS_CERT_FILE") && !reported(errors, "FBR_TLS_KEY_FILE")) {
    errors.emplace_back(
        "tls: cert_file and key_file must be set together (or FBR_TLS_CERT_FILE and "
        "FBR_TLS_KEY_FILE)");
  }
  if (config.journal.backend == "nats" && config.journal.nats.servers.empty() &&
      !reported(errors, "journal.nats.servers") && !reported(errors, "FBR_JOURNAL_NATS_SERVERS")) {
    errors.emplace_back(
        R"(journal.nats.servers: at least one server is required when journal.backend is "nats" (or FBR_JOURNAL_NATS_SERVERS))");
  }
}

std::string parse_error(std::string_view text, std::string_view origin,
                        const rapidjson::Document& document) {
  const std::size_t offset = std::min(document.GetErrorOffset(), text.size());
  const std::string_view before = text.substr(0, offset);
  const std::size_t line =
      1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
  const auto line_start = before.rfind('\n');
  const std::size_t column =
      line_start == std::string_view::npos ? offset + 1 : offset - line_start;
  std::string message = rapidjson::GetParseError_En(document.GetParseError());
  if (message.ends_with('.')) message.pop_back();
  return std::string(origin) + ":" + std::to_string(line) + ":" + std::to_string(column) +
         ": invalid JSON: " + message + " (offset " + std::to_string(offset) + ")";
}

std::optional<std::string> read_file(const std::filesystem::path& file, std::string& error) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read " + file.string() + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::string content;
  std::array<char, 65536> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "cannot read " + file.string() + ": " + std::strerror(errno);
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    content.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return content;
}

// ---------------------------------------------------------------------------------------------
// Output

using PrettyWriter = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void put(PrettyWriter& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
void key(PrettyWriter& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}
void put_or_null(PrettyWriter& w, std::string_view s) {
  if (s.empty()) {
    w.Null();
  } else {
    put(w, s);
  }
}
void put_strings(PrettyWriter& w, const std::vector<std::string>& items) {
  w.StartArray();
  for (const auto& item : items)
    put(w, item);
  w.EndArray();
}

void put_retry(PrettyWriter& w, const core::RetryPolicy& retry) {
  w.StartObject();
  key(w, "max_attempts");
  w.Int(retry.max_attempts);
  key(w, "initial_backoff_ms");
  w.Int64(retry.initial_backoff_ms);
  key(w, "max_backoff_ms");
  w.Int64(retry.max_backoff_ms);
  w.EndObject();
}

void put_when(PrettyWriter& w, const core::WhenFilter& when) {
  w.StartObject();
  key(w, "status");
  if (when.status.empty()) {
    w.Null();
  } else {
    w.StartArray();
    for (const int status : when.status)
      w.Int(status);
    w.EndArray();
  }
  key(w, "test");
  if (when.test) {
    w.Bool(*when.test);
  } else {
    w.Null();
  }
  key(w, "resource_types");
  if (when.resource_types.empty()) {
    w.Null();
  } else {
    put_strings(w, when.resource_types);
  }
  key(w, "source_id");
  put_or_null(w, when.source_id.value_or(""));
  key(w, "destination_id");
  put_or_null(w, when.destination_id.value_or(""));
  w.EndObject();
}

void put_servers(PrettyWriter& w, const std::vector<std::string>& servers) {
  w.StartArray();
  for (const auto& server : servers)
    put(w, core::redacted_url(server));
  w.EndArray();
}

/// Header values or child variables: a literal may be a secret, so only {"env": NAME} is shown.
void put_literals_redacted(PrettyWriter& w, const std::map<std::string, LiteralOrEnv>& values) {
  w.StartObject();
  for (const auto& [name, value] : values) {
    key(w, name);
    if (value.env.empty()) {
      put(w, kRedacted);
    } else {
      w.StartObject();
      key(w, "env");
      put(w, value.env);
      w.EndObject();
    }
  }
  w.EndObject();
}

void put_handler(PrettyWriter& w, const Handler& handler, const core::RetryPolicy& defaults) {
  w.StartObject();
  key(w, "name");
  put(w, handler.name);
  key(w, "type");
  put(w, handler.type);
  key(w, "when");
  put_when(w, handler.when);
  key(w, "retry");
  put_retry(w, handler.retry.value_or(defaults));
  key(w, "concurrency");
  w.Int(handler.concurrency);
  if (const auto* file = std::get_if<FileHandler>(&handler.settings)) {
    key(w, "dir");
    put_or_null(w, file->dir);
    key(w, "path");
    put_or_null(w, file->path);
  } else if (const auto* exec = std::get_if<ExecHandler>(&handler.settings)) {
    key(w, "command");
    put_strings(w, exec->command);
    key(w, "timeout_ms");
    w.Uint(exec->timeout_ms);
    key(w, "env");
    put_literals_redacted(w, exec->env);
  } else if (const auto* http = std::get_if<HttpHandler>(&handler.settings)) {
    key(w, "url");
    put(w, core::redacted_url(http->url));
    key(w, "headers");
    put_literals_redacted(w, http->headers);
    key(w, "timeout_ms");
    w.Uint(http->timeout_ms);
  } else if (const auto* download = std::get_if<DownloadHandler>(&handler.settings)) {
    key(w, "dir");
    put(w, download->dir);
    key(w, "parallel");
    w.Int(download->parallel);
    key(w, "token_env");
    put_or_null(w, download->token_env);
    key(w, "token_file");
    put_or_null(w, download->token_file);
    key(w, "token_command");
    if (download->token_command.empty()) {
      w.Null();
    } else {
      put_strings(w, download->token_command);
    }
    key(w, "token_command_env");
    put_literals_redacted(w, download->token_command_env);
    key(w, "store");
    put(w, download->store);
    key(w, "connect_timeout_ms");
    w.Uint(download->connect_timeout_ms);
    key(w, "idle_timeout_ms");
    w.Uint(download->idle_timeout_ms);
    key(w, "min_speed_bytes_per_s");
    w.Uint(download->min_speed_bytes_per_s);
    key(w, "min_speed_window_s");
    w.Uint(download->min_speed_window_s);
    key(w, "max_files");
    w.Uint(download->max_files);
    key(w, "transfer_attempts");
    w.Uint(download->transfer_attempts);
    key(w, "max_retry_wait_ms");
    w.Uint(download->max_retry_wait_ms);
    key(w, "allowed_hosts");
    put_strings(w, download->egress.allowed_hosts);
    key(w, "allow_private_addresses");
    w.Bool(download->egress.allow_private_addresses);
    key(w, "token_hosts");
    if (download->egress.token_hosts) {
      put_strings(w, *download->egress.token_hosts);
    } else {
      w.Null();
    }
    key(w, "max_file_bytes");
    w.Uint64(download->max_file_bytes);
    key(w, "max_event_bytes");
    w.Uint64(download->max_event_bytes);
    key(w, "max_decompression_ratio");
    w.Uint(download->max_decompression_ratio);
    key(w, "min_free_bytes");
    if (download->min_free_bytes) {
      w.Uint64(*download->min_free_bytes);
    } else {
      w.Null();
    }
  } else if (const auto* nats = std::get_if<NatsHandler>(&handler.settings)) {
    key(w, "servers");
    put_servers(w, nats->servers);
    key(w, "subject");
    put(w, nats->subject);
    key(w, "stream");
    put_or_null(w, nats->stream);
    key(w, "credentials_file");
    put_or_null(w, nats->credentials_file);
  }
  w.EndObject();
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text = *entry;
    const auto equals = text.find('=');
    if (!text.starts_with("FBR_") || equals == std::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return env;
}

LoadResult parse_config(std::string_view text, const Environment& env, std::string_view origin) {
  LoadResult result;
  rapidjson::Document document;
  constexpr unsigned kFlags = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
                              rapidjson::kParseValidateEncodingFlag;
  document.Parse<kFlags>(text.data(), text.size());
  if (document.HasParseError()) {
    result.errors.push_back(parse_error(text, origin, document));
    return result;
  }
  if (!document.IsObject()) {
    result.errors.push_back(std::string(origin) +
                            ": the configuration must be a JSON object, got " +
                            describe_kind(document));
    return result;
  }
  Config config;
  Reader reader(result.errors);
  read_top(reader, document, config);
  apply_environment(env, config, result.errors);
  check_effective(config, result.errors);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

LoadResult load_config(const std::filesystem::path& file, const Environment& env) {
  std::filesystem::path source = file;
  if (source.empty()) {
    if (const auto it = env.find("FBR_CONFIG"); it != env.end()) source = trim(it->second);
  }
  if (source.empty()) return parse_config("{}", env, "(defaults)");
  LoadResult result;
  std::string error;
  const auto text = read_file(source, error);
  if (!text) {
    result.errors.push_back(error);
    return result;
  }
  result = parse_config(*text, env, source.string());
  if (result.config) result.config->source_file = source;
  return result;
}

std::string to_redacted_json(const Config& config) {
  rapidjson::StringBuffer buffer;
  PrettyWriter w(buffer);
  w.SetIndent(' ', 2);
  w.StartObject();
  key(w, "listen");
  put(w, format_listen(config.listen));
  key(w, "path");
  put(w, config.path);
  key(w, "verification_tokens");
  w.StartArray();  // the count stays visible: rotation in progress or not
  for (std::size_t i = 0; i < config.verification_tokens.size(); ++i)
    put(w, kRedacted);
  w.EndArray();
  key(w, "data_dir");
  put(w, config.data_dir.string());
  key(w, "max_body_bytes");
  w.Uint64(config.max_body_bytes);
  key(w, "invalid_payloads");
  put(w, config.invalid_payloads == InvalidPayloads::kReject ? "reject" : "quarantine");

  key(w, "tls");
  w.StartObject();
  key(w, "cert_file");
  put_or_null(w, config.tls.cert_file);
  key(w, "key_file");
  put_or_null(w, config.tls.key_file);
  w.EndObject();

  key(w, "log");
  w.StartObject();
  key(w, "level");
  put(w, config.log.level);
  key(w, "format");
  put(w, config.log.format == LogFormat::kJson ? "json" : "text");
  w.EndObject();

  key(w, "retry");
  put_retry(w, config.retry);

  key(w, "journal");
  w.StartObject();
  key(w, "backend");
  put(w, config.journal.backend);
  key(w, "nats");
  w.StartObject();
  key(w, "servers");
  put_servers(w, config.journal.nats.servers);
  key(w, "stream");
  put(w, config.journal.nats.stream);
  key(w, "subject");
  put(w, config.journal.nats.subject);
  key(w, "replicas");
  w.Int(config.journal.nats.replicas);
  key(w, "credentials_file");
  put_or_null(w, config.journal.nats.credentials_file);
  key(w, "duplicate_window_s");
  w.Uint(config.journal.nats.duplicate_window_s);
  key(w, "token_env");  // the variable's name only, never its value
  put_or_null(w, config.journal.nats.token_env);
  w.EndObject();
  w.EndObject();

  key(w, "dispatch");
  w.StartObject();
  key(w, "concurrency");
  w.Int(config.dispatch_concurrency);
  w.EndObject();

  key(w, "limits");
  w.StartObject();
  key(w, "max_header_bytes");
  w.Uint(config.limits.max_header_bytes);
  key(w, "header_timeout_ms");
  w.Uint(config.limits.header_timeout_ms);
  key(w, "body_timeout_ms");
  w.Uint(config.limits.body_timeout_ms);
  key(w, "idle_timeout_ms");
  w.Uint(config.limits.idle_timeout_ms);
  key(w, "max_connections");
  w.Uint(config.limits.max_connections);
  key(w, "max_unauthenticated_body_bytes");
  w.Uint(config.limits.max_unauthenticated_body_bytes);
  w.EndObject();

  key(w, "handlers");
  w.StartArray();
  for (const auto& handler : config.handlers)
    put_handler(w, handler, config.retry);
  w.EndArray();

  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize()) + "\n";
}

}  // namespace fbr::config
