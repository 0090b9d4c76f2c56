#include "core/when.hpp"

#include <algorithm>

namespace fbr::core {

bool matches(const WhenFilter& when, const Event& event) {
  if (!when.status.empty() &&
      std::find(when.status.begin(), when.status.end(), event.status) == when.status.end()) {
    return false;
  }
  if (when.test && *when.test != event.meta.test.value_or(false)) return false;
  if (!when.resource_types.empty()) {
    const bool any =
        std::any_of(event.output.begin(), event.output.end(), [&](const OutputFile& f) {
          return std::find(when.resource_types.begin(), when.resource_types.end(), f.type) !=
                 when.resource_types.end();
        });
    if (!any) return false;
  }
  if (when.source_id) {
    const auto& source = event.meta.source;
    if (!source || !source->id || *source->id != *when.source_id) return false;
  }
  if (when.destination_id) {
    const auto& destinations = event.meta.destinations;
    const bool any = std::any_of(destinations.begin(), destinations.end(), [&](const SystemRef& d) {
      return d.id && *d.id == *when.destination_id;
    });
    if (!any) return false;
  }
  return true;
}

}  // namespace fbr::core
