#include "server/admin/params.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <set>

#include "core/text.hpp"

namespace fbr::server::admin {
namespace {

constexpr std::size_t kMaxValueBytes = 512;  // a Log ID, a key, a cursor: far below
constexpr std::array<std::string_view, 5> kStates = {"pending", "running", "done", "failed",
                                                     "dead"};

std::optional<long long> integer(std::string_view text) {
  long long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

/// A received_at bound: a date or a date-time in UTC (received_at is stored as ...Z, and the
/// bounds compare with it as text).
bool utc_time(std::string_view text) {
  return core::is_iso8601(text) && (text.size() == 10 || text.ends_with('Z'));
}

/// limit: an integer, clamped to 1..500 (a page never grows past it).
bool read_limit(std::string_view text, int& limit, std::string& error) {
  const auto value = integer(text);
  if (!value) {
    error = "limit: must be an integer (1 to " + std::to_string(kMaxLimit) + ")";
    return false;
  }
  limit = static_cast<int>(std::clamp<long long>(*value, 1, kMaxLimit));
  return true;
}

}  // namespace

bool only_params(boost::urls::params_view params, const std::vector<std::string_view>& allowed,
                 std::string& error) {
  std::set<std::string, std::less<>> seen;
  for (const auto& param : params) {
    // A key shown back is cut and made printable: it is the client's text.
    const std::string shown = core::printable(param.key.substr(0, 64));
    if (std::find(allowed.begin(), allowed.end(), param.key) == allowed.end()) {
      error = shown + ": unknown parameter";
      return false;
    }
    if (!seen.insert(param.key).second) {
      error = shown + ": given more than once";
      return false;
    }
    if (param.value.size() > kMaxValueBytes) {
      error = shown + ": longer than " + std::to_string(kMaxValueBytes) + " bytes";
      return false;
    }
  }
  return true;
}

std::optional<EventQuery> event_query(boost::urls::params_view params,
                                      const std::vector<std::string>& handlers,
                                      std::string& error) {
  if (!only_params(params,
                   {"state", "status", "test", "handler", "q", "since", "until", "limit", "cursor"},
                   error)) {
    return std::nullopt;
  }
  EventQuery query;
  for (const auto& param : params) {
    const std::string& key = param.key;
    const std::string& value = param.value;
    if (value.empty()) continue;  // an empty filter matches all (a form's blank field)
    if (key == "state") {
      if (std::find(kStates.begin(), kStates.end(), value) == kStates.end()) {
        error = "state: must be one of pending, running, done, failed, dead";
        return std::nullopt;
      }
      query.state = value;
    } else if (key == "status") {
      if (value != "200" && value != "202") {
        error = "status: must be 200 or 202";
        return std::nullopt;
      }
      query.status = value == "200" ? 200 : 202;
    } else if (key == "test") {
      if (value != "true" && value != "false") {
        error = "test: must be true or false";
        return std::nullopt;
      }
      query.test = value == "true";
    } else if (key == "handler") {
      if (std::find(handlers.begin(), handlers.end(), value) == handlers.end()) {
        error = "handler: no handler " + core::printable(value.substr(0, 64)) + " is configured";
        return std::nullopt;
      }
      query.handler = value;
    } else if (key == "q") {
      query.q = value;
    } else if (key == "since" || key == "until") {
      if (!utc_time(value)) {
        error = key + ": must be an ISO 8601 UTC time (2026-12-02 or 2026-12-02T20:14:03Z)";
        return std::nullopt;
      }
      (key == "since" ? query.since : query.until) = value;
    } else if (key == "limit") {
      if (!read_limit(value, query.limit, error)) return std::nullopt;
    } else if (key == "cursor") {
      query.cursor = value;
    }
  }
  if (!query.since.empty() && !query.until.empty() && query.until <= query.since) {
    error = "until: must be after since";
    return std::nullopt;
  }
  return query;
}

std::optional<PageQuery> page_query(boost::urls::params_view params, std::string& error) {
  if (!only_params(params, {"limit", "cursor"}, error)) return std::nullopt;
  PageQuery page;
  for (const auto& param : params) {
    if (param.value.empty()) continue;
    if (param.key == "limit" && !read_limit(param.value, page.limit, error)) return std::nullopt;
    if (param.key == "cursor") page.cursor = param.value;
  }
  return page;
}

}  // namespace fbr::server::admin
