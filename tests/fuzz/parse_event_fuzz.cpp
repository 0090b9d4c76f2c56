// libFuzzer target: core::parse_event and core::parse_challenge on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/event.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto result = fbr::core::parse_event(body);
  // The contract: an event exactly when there is no error, and a key for every event.
  if (result.event.has_value() != result.errors.empty()) std::abort();
  if (result.event && result.event->key.empty()) std::abort();
  (void)fbr::core::parse_challenge(body);
  return 0;
}
