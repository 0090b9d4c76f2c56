#pragma once
// The admin API's query parameters, checked one by one: an unknown, repeated or malformed one is
// a 400 that names it, so a typo never silently widens a filter. Pure (unit-tested).
#include <boost/url/params_view.hpp>
#include <optional>
#include <string>
#include <vector>

#include "server/journal/console.hpp"

namespace fbr::server::admin {

inline constexpr int kMaxLimit = 500;

/// GET /api/events's filters. `handlers`: the configured names (`handler` must be one).
std::optional<EventQuery> event_query(boost::urls::params_view params,
                                      const std::vector<std::string>& handlers, std::string& error);

/// GET /api/quarantine's page.
struct PageQuery {
  std::string cursor;
  int limit = 50;
};
std::optional<PageQuery> page_query(boost::urls::params_view params, std::string& error);

/// Only the named parameters, each at most once; `error` names the first other one.
bool only_params(boost::urls::params_view params, const std::vector<std::string_view>& allowed,
                 std::string& error);

}  // namespace fbr::server::admin
