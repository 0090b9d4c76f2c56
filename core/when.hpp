#pragma once
// Handler routing: which events a handler's `when` filter selects.
#include <optional>
#include <string>
#include <vector>

#include "core/event.hpp"

namespace fbr::core {

/// A handler's `when` filter. Every field is optional; all present ones must match.
struct WhenFilter {
  std::vector<int> status;                    ///< any of these (200, 202)
  std::optional<bool> test;                   ///< Meta.Test equals this (absent/null Test = false)
  std::vector<std::string> resource_types;    ///< any output[].type is in this list
  std::optional<std::string> source_id;       ///< Meta.Source.ID equals this
  std::optional<std::string> destination_id;  ///< any Meta.Destinations[].ID equals this
};

/// True when the event passes every filter that is set.
bool matches(const WhenFilter& when, const Event& event);

}  // namespace fbr::core
