#pragma once
// Small pure helpers on strings shared by the layers: hashing, comparison, format checks.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbr::core {

/// Lower-case hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view bytes);

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

/// 8-4-4-4-12 hex digits (any version, any case).
bool is_uuid(std::string_view s);

/// An ISO 8601 / RFC 3339 date or date-time: YYYY-MM-DD, optionally followed by
/// Thh:mm[:ss[.fff]] and Z or ±hh:mm. Checks ranges (month 1-12, day 1-31, hour 0-23, ...).
bool is_iso8601(std::string_view s);

/// A FHIR R4 resource type name (Patient, Observation, OperationOutcome, ...).
bool is_fhir_resource_type(std::string_view s);

/// An absolute http:// or https:// URL with a non-empty host and no whitespace or control chars.
/// The host of an absolute http(s) URL (an IPv6 literal without its brackets), or nullopt when
/// `s` is not one.
std::optional<std::string_view> http_url_host(std::string_view s);
bool is_absolute_http_url(std::string_view s);

/// `s` without leading and trailing spaces and tabs (HTTP's optional whitespace).
std::string_view trim_blanks(std::string_view s);

/// `s` without leading and trailing ASCII white space (space, \t, \n, \v, \f, \r).
std::string_view trim_whitespace(std::string_view s);

/// `s` with A-Z made a-z (ASCII only: header names, media types, host names, schemes).
std::string lower_ascii(std::string_view s);

/// The items of a `separator`-separated list, each without surrounding white space
/// (trim_whitespace); empty items are dropped: " a, ,b " → {"a", "b"}.
std::vector<std::string> split_list(std::string_view s, char separator = ',');

/// Escapes a string for inclusion inside JSON double quotes (", \, control characters). The result
/// is valid UTF-8 whatever the input: each byte of an invalid sequence becomes U+FFFD.
std::string json_escape(std::string_view s);

/// Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(std::string_view s);

/// The byte offset of the first control character in `s`: C0 (U+0000-U+001F), DEL (U+007F) or
/// C1 (U+0080-U+009F, as UTF-8 or as a lone byte 0x80-0x9F); nullopt when there is none.
std::optional<std::size_t> find_control_character(std::string_view s);

/// `s` made safe to print on a terminal: control characters (C0, ESC, DEL, C1) become visible
/// escapes (\n, \t, \r, \x1b, \u009b) and the bytes of invalid UTF-8 become \xNN, so nothing
/// from outside can move the cursor, clear the screen or retitle the window. Backslashes are
/// kept as they are: this is for a person reading, not a reversible encoding.
std::string printable(std::string_view s);

}  // namespace fbr::core
