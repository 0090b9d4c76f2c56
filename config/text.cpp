// The text rules of the configuration (see text.hpp).
#include "config/text.hpp"

#include <arpa/inet.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "core/text.hpp"
#include "core/url.hpp"

namespace fbr::config::detail {
namespace {

constexpr std::array<std::string_view, 3> kReservedPaths = {"/healthz", "/readyz", "/metrics"};

}  // namespace

bool is_control(char c) {
  return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), is_control);
}

bool one_of(std::string_view s, std::span<const std::string_view> choices) {
  return std::find(choices.begin(), choices.end(), s) != choices.end();
}

std::string join(std::span<const std::string_view> items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

std::string choices_text(std::span<const std::string_view> choices) {
  std::string out = "one of ";
  for (std::size_t i = 0; i < choices.size(); ++i) {
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
  return core::host_port(listen.host, listen.port);
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
  if (core::trim_whitespace(token).size() != token.size())
    return "must not have leading or trailing whitespace";
  return "";
}

}  // namespace fbr::config::detail
