#pragma once
// The text rules of the configuration: what a host, a path, a subject or an environment variable
// name may look like, and how values are quoted in messages. Pure functions, shared by the JSON
// reader, the FBR_* reader and the checks.
#include <rapidjson/document.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace fbr::config::detail {

using Value = rapidjson::Value;

constexpr std::uint64_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kMaxI32 = std::numeric_limits<std::int32_t>::max();
constexpr std::uint64_t kMaxI64 = std::numeric_limits<std::int64_t>::max();
constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();

constexpr std::string_view kPositiveInteger = "a positive integer";
constexpr std::string_view kEnvNameExpected =
    "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";

bool is_control(char c);
bool is_space(char c);
bool is_alnum(char c);
bool has_control(std::string_view s);
bool one_of(std::string_view s, std::span<const std::string_view> choices);
std::string join(std::span<const std::string_view> items, std::string_view separator);
/// one of "a", "b", "c"
std::string choices_text(std::span<const std::string_view> choices);
/// The string as a JSON literal for a message, cut short when long.
std::string json_quoted(std::string_view s);
/// What a JSON value is, for "got ..." in messages: scalars as written, containers by kind.
std::string describe(const Value& v);
/// The kind of a value only: used where the value itself may be a secret.
std::string describe_kind(const Value& v);
std::string_view view(const Value& v);
/// "a.b" from "a" and "b" ("b" from "" and "b").
std::string child(const std::string& path, std::string_view key);
/// "a[3]"
std::string element(const std::string& path, std::size_t index);

bool is_env_name(std::string_view s);
bool is_handler_name(std::string_view s);
bool is_stream_name(std::string_view s);
/// A literal subject: non-empty tokens separated by '.', no wildcards or whitespace.
bool is_literal_subject(std::string_view s);
bool is_header_name(std::string_view s);
/// An allowed_hosts / token_hosts entry: a host name (letters, digits, '-', '_', dots between
/// non-empty labels, an optional trailing dot), "*." and a name, or an IPv4 or IPv6 literal (with
/// or without brackets).
bool is_host_pattern(std::string_view s);
bool is_valid_path(std::string_view s);
/// Why `path` cannot be the webhook path, or empty when it can.
std::string path_problem(std::string_view path);
/// Why `token` cannot be a verification token (never quoting it), or empty when it can.
std::string token_problem(std::string_view token);

std::optional<std::uint64_t> parse_decimal(std::string_view s);
std::optional<Listen> parse_listen(std::string_view s);
std::string format_listen(const Listen& listen);

}  // namespace fbr::config::detail
