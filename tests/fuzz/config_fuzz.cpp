// libFuzzer target: the configuration loader (JSON with comments) and its redacted output.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto result = fbr::config::parse_config(text, {}, "fuzz.json");
  if (result.config.has_value() != result.errors.empty()) std::abort();
  if (result.config) {
    // What check-config prints must load again (tokens are placeholders, so they still count).
    auto again =
        fbr::config::parse_config(fbr::config::to_redacted_json(*result.config), {}, "out");
    if (!again.ok()) std::abort();
  }
  return 0;
}
